/**
 * How long the shipped CLI takes to start, side by side in one run with the floor (`node -e 0`):
 *   - `edgeguard --help` and `edgeguard model verify --help` (no domain library should load);
 *   - `edgeguard model inspect` on the demo package (header and signature subjects);
 *   - `edgeguard run` on the demo model: process start to the printed answer;
 *   - `edgeguard agent serve`: process start to the first answered POST /v1/infer;
 *   - `edgeguard server`: process start to its start line (listening), on an existing data directory.
 * Median, min and max of --runs runs each (default 10), and each median's distance to the floor's.
 * The goals of docs/benchmarks.md ("Start-up") are printed beside them.
 *
 *   npm run build && node --import tsx bench/startup.ts [--runs 10] [--json]
 */
import { spawn, execFileSync } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { machine } from './lib/machine.ts';

const args = process.argv.slice(2);
const RUNS = Number(args.includes('--runs') ? args[args.indexOf('--runs') + 1] : 10);
const JSON_OUT = args.includes('--json');
const ROOT = new URL('..', import.meta.url).pathname;
const CLI = join(ROOT, 'bin', 'edgeguard.js');
const FIXTURES = join(ROOT, 'fixtures');
const PASSPHRASE = 'bench-startup-passphrase';
/** A child that has not reached its mark by then is a failure of the benchmark, with its output. */
const DEADLINE_MS = 120_000;

interface Row {
  name: string;
  goal?: string;
  ms: number[];
}

/** Spawn `argv` and resolve with the elapsed milliseconds once `ready(stdout, stderr)` holds. */
function timeUntil(
  argv: string[],
  ready: (out: string, err: string) => Promise<boolean> | boolean,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let done = false;
    const finish = (e: Error | null, ms?: number) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (child.exitCode === null) child.kill('SIGKILL');
      if (e) reject(e);
      else resolve(ms!);
    };
    const timer = setTimeout(
      () => finish(new Error(`${argv.join(' ')}: not ready after ${DEADLINE_MS} ms\n${out}\n${err}`)),
      DEADLINE_MS,
    );
    const check = async () => {
      try {
        if (!done && (await ready(out, err))) finish(null, performance.now() - t0);
      } catch (e) {
        finish(e as Error);
      }
    };
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      void check();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      void check();
    });
    child.on('exit', (code) => {
      void (async () => {
        await check();
        if (!done) finish(new Error(`${argv.join(' ')} exited ${code} before it was ready\n${out}\n${err}`));
      })();
    });
  });
}

/** Elapsed milliseconds of a process that runs to completion (exit 0). */
function timeExit(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) =>
      code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${argv.join(' ')} exited ${code}\n${out}`)),
    );
  });
}

function cli(...a: string[]): string {
  return execFileSync(process.execPath, [CLI, ...a], {
    encoding: 'utf8',
    env: { ...process.env, EDGEGUARD_CA_PASSPHRASE: PASSPHRASE },
  });
}

async function prepare(dir: string): Promise<{ agentYaml: string; digit: Buffer }> {
  cli('key', 'new', '--type', 'content', '-o', join(dir, 'model.key'));
  cli('key', 'new', '--type', 'signing', '-o', join(dir, 'publisher'));
  for (const [file, name] of [
    ['mnist-cnn.onnx', 'mnist'],
    ['mnist-mlp.onnx', 'mnist-mlp'],
  ] as const)
    cli(
      'model',
      'pack',
      join(FIXTURES, 'models', file),
      '--key',
      join(dir, 'model.key'),
      '--sign',
      join(dir, 'publisher.key'),
      '--name',
      name,
      '--version',
      '1',
      '--meta',
      join(FIXTURES, 'models', 'mnist.meta.yaml'),
      '-o',
      join(dir, `${name}.egm`),
    );
  await copyFile(join(FIXTURES, 'digits', '7-0.png'), join(dir, 'digit.png'));
  const agentYaml = join(dir, 'agent.yaml');
  await writeFile(
    agentYaml,
    [
      'listen: { host: 127.0.0.1, port: 0 }',
      'trust: { publicKeys: [publisher.pub] }',
      'contentKey: { file: model.key }',
      'models: { primary: mnist.egm, ensemble: mnist-mlp.egm }',
      `guard: { profile: ${JSON.stringify(join(FIXTURES, 'guard', 'mnist-cnn.profile.json'))} }`,
      'review: { enabled: false }',
      'log: { level: info }',
      '',
    ].join('\n'),
  );
  return { agentYaml, digit: await readFile(join(dir, 'digit.png')) };
}

/** The agent's URL from its pino start line, then one inference answered. */
function agentReady(digit: Buffer): (out: string, err: string) => Promise<boolean> {
  let asked = false;
  return async (_out, err) => {
    const m = /"url":"(http:\/\/[^"]+)"[^\n]*inference service listening/.exec(err);
    if (!m || asked) return false;
    asked = true;
    const r = await fetch(`${m[1]}/v1/infer`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: digit,
    });
    if (r.status !== 200) throw new Error(`agent answered ${r.status}: ${await r.text()}`);
    await r.arrayBuffer();
    return true;
  };
}

function stats(ms: number[]): { median: number; min: number; max: number } {
  const s = [...ms].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return { median: s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2, min: s[0]!, max: s[s.length - 1]! };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'eg-bench-startup-'));
  try {
    const { agentYaml, digit } = await prepare(dir);
    const pkg = join(dir, 'mnist.egm');
    const env = { ...process.env, EDGEGUARD_CA_PASSPHRASE: PASSPHRASE };
    const data = join(dir, 'cp');
    // The first start makes the fleet CA and the log keys: measured once, apart.
    const serverArgs = [CLI, '--json', 'server', '--data', data, '--listen', '127.0.0.1:0', '--log-level', 'warn'];
    const serverUp = (out: string) => out.includes('"url"');
    const firstServerStart = await timeUntil(serverArgs, serverUp, env);

    const rows: Row[] = [
      { name: 'node -e 0 (floor)', ms: [] },
      { name: 'edgeguard --help', goal: '<= floor + 100 ms', ms: [] },
      { name: 'edgeguard model verify --help', goal: '<= floor + 100 ms', ms: [] },
      { name: 'edgeguard model inspect', ms: [] },
      { name: 'edgeguard run (demo CNN, one digit)', goal: '<= floor + 300 ms', ms: [] },
      { name: 'edgeguard agent serve -> first answer', goal: '<= 1000 ms', ms: [] },
      { name: 'edgeguard server -> listening', goal: '<= 1000 ms', ms: [] },
    ];
    const jobs: Array<() => Promise<number>> = [
      () => timeExit(['-e', '0']),
      () => timeExit([CLI, '--help']),
      () => timeExit([CLI, 'model', 'verify', '--help']),
      () => timeExit([CLI, 'model', 'inspect', pkg]),
      () =>
        timeExit([
          CLI,
          'run',
          pkg,
          '--key',
          join(dir, 'model.key'),
          '--pub',
          join(dir, 'publisher.pub'),
          '--input',
          join(dir, 'digit.png'),
        ]),
      () => timeUntil([CLI, 'agent', 'serve', '--config', agentYaml], agentReady(digit)),
      () => timeUntil(serverArgs, serverUp, env),
    ];
    // Interleaved, so that a busy moment of the machine spreads over every row alike.
    for (let i = 0; i < RUNS; i++) for (let j = 0; j < jobs.length; j++) rows[j]!.ms.push(await jobs[j]!());

    const floor = stats(rows[0]!.ms).median;
    const table = rows.map((r) => ({
      name: r.name,
      goal: r.goal,
      ...stats(r.ms),
      overFloor: stats(r.ms).median - floor,
    }));
    if (JSON_OUT) {
      console.log(JSON.stringify({ machine: machine({ load: true }), runs: RUNS, firstServerStart, rows: table }));
      return;
    }
    console.log(`machine: ${machine({ load: true })}`);
    console.log(`runs: ${RUNS} each, interleaved; milliseconds`);
    console.log('| command | median | min | max | median - floor | goal |');
    console.log('|---|---:|---:|---:|---:|---|');
    for (const r of table)
      console.log(
        `| ${r.name} | ${r.median.toFixed(0)} | ${r.min.toFixed(0)} | ${r.max.toFixed(0)} | ${r.overFloor.toFixed(0)} | ${r.goal ?? ''} |`,
      );
    console.log(`first server start (creates the fleet CA and log keys): ${firstServerStart.toFixed(0)} ms`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
