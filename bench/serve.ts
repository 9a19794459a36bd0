/**
 * The inference service's cost over the guard itself: p50/p99 latency of one legitimate digit
 *   - baseline, in process: decode (sharp) + Guard.check, the work the service does per request;
 *   - over HTTP, one request at a time (fresh keep-alive connection pool of Node's fetch);
 *   - over HTTP at the concurrency limit (4 clients), with the throughput;
 * and the cost of sealing a flagged input for review (RFC 9180 seal + spool write).
 *
 *   node --import tsx bench/serve.ts [--runs 1000]
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startAgent } from '../src/agent/serve.ts';
import { computeStatistics } from '../src/guard/index.ts';
import { decodeImage, pixelsToTensor } from '../src/inference/index.ts';
import { ReviewQueue } from '../src/agent/review.ts';
import { benchAgentConfig, FIXTURES } from './lib/agent-fixture.ts';
import { machine } from './lib/machine.ts';

const args = process.argv.slice(2);
const RUNS = Number(args.includes('--runs') ? args[args.indexOf('--runs') + 1] : 1000);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!;
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'eg-bench-serve-'));
  try {
    const { config, review } = await benchAgentConfig(dir);
    const agent = await startAgent(config);
    const png = await readFile(join(FIXTURES, 'digits', '7-0.png'));
    const rt = agent.runtime;
    const pre = rt.pre;
    if (!pre) throw new Error('the demo model declares image preprocessing');

    const inProcess = async () => {
      const img = await decodeImage(png, pre);
      const tensor = pixelsToTensor(img, pre).data;
      return rt.guard.check({ tensor, statistics: computeStatistics(img) });
    };
    const overHttp = async () => {
      const r = await fetch(`${agent.url}/v1/infer`, {
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: png,
      });
      const b = (await r.json()) as { verdict: string };
      if (b.verdict !== 'accept') throw new Error(`unexpected verdict ${b.verdict}`);
    };
    for (let i = 0; i < 50; i++) {
      await inProcess();
      await overHttp();
    }
    const time = async (fn: () => Promise<unknown>, n: number) => {
      const xs: number[] = [];
      for (let i = 0; i < n; i++) {
        const t = performance.now();
        await fn();
        xs.push(performance.now() - t);
      }
      return xs;
    };
    const base = await time(inProcess, RUNS);
    const http = await time(overHttp, RUNS);
    const conc: number[] = [];
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let i = 0; i < RUNS / 4; i++) {
          const t = performance.now();
          await overHttp();
          conc.push(performance.now() - t);
        }
      }),
    );
    const wall = (performance.now() - t0) / 1000;
    await agent.close();

    const queue = await ReviewQueue.open({
      publicKey: review.publicKey,
      dir: join(dir, 'seal-bench'),
      maxItems: 100_000,
      maxBytes: 1 << 30,
    });
    const meta2 = { contentType: 'image/png', verdict: 'flag' as const, reasons: [] };
    const seal = await time(() => queue.submit(meta2, png), Math.min(RUNS, 500));
    await queue.close();

    const p50b = pct(base, 0.5);
    const row = (name: string, xs: number[]) =>
      `| ${name} | ${pct(xs, 0.5).toFixed(2)} ms | ${pct(xs, 0.99).toFixed(2)} ms | ${(pct(xs, 0.5) / p50b).toFixed(2)}x |`;
    console.log(`machine: ${machine()}; ${RUNS} requests per row; input fixtures/digits/7-0.png (accepted)`);
    console.log('| path | p50 | p99 | p50 vs baseline |');
    console.log('|---|---|---|---|');
    console.log(row('in process: decode + Guard.check (baseline)', base));
    console.log(row('HTTP POST /v1/infer, one at a time', http));
    console.log(row('HTTP POST /v1/infer, 4 concurrent clients (= limit)', conc));
    console.log(row('seal for review + spool write (flagged inputs only)', seal));
    console.log(`throughput at 4 concurrent clients: ${(RUNS / wall).toFixed(0)} requests/s`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
