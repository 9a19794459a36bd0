/**
 * Time from a sensor edge to a locked device: the hwmon intrusion alarm file in a sysfs-shaped
 * directory goes from 0 to 1, the TamperGuard's poll sees it, debounces, and runs the whole
 * response (stop serving and wipe are no-op callbacks here; the lock state is written and fsynced;
 * the tamper PCR is extended on swtpm; journal and notify are no-op callbacks). p50/p99 over N
 * runs, for the shipped defaults (poll 200 ms, 2 readings) and a fast setting (poll 20 ms, 1
 * reading), against a baseline measured in the same run: one bare PCR extend through the same
 * TPM client (a tpm2-tools process), the floor of every response.
 *
 *   node --import tsx bench/tamper.ts [--runs 30] [--tcti device:/dev/tpmrm0]
 */
import { execSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { TamperGuard, parseTamperConfig, type TamperResponseReport } from '../src/tamper/index.ts';
import { TpmClient, startSwtpm, type Swtpm } from '../src/tpm/index.ts';
import { makeSysfs, type FakeSysfs } from '../test/helpers/sysfs.ts';
import { machine } from './lib/machine.ts';

const args = process.argv.slice(2);
const opt = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const RUNS = Number(opt('--runs') ?? 30);

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

const noop = () => undefined;

/** One edge-to-locked measurement: a fresh guard and state directory, the alarm written, onLocked awaited. */
async function edgeToLocked(
  sysfs: FakeSysfs,
  client: TpmClient,
  base: string,
  setting: { pollIntervalMs: number; readings: number },
): Promise<{ ms: number; report: TamperResponseReport }> {
  await sysfs.intrusion(0);
  let done!: (r: TamperResponseReport) => void;
  const locked = new Promise<TamperResponseReport>((r) => (done = r));
  const guard = new TamperGuard(
    parseTamperConfig({
      sysfsRoot: sysfs.root,
      pollIntervalMs: setting.pollIntervalMs,
      sensors: [{ kind: 'intrusion', name: 'chassis', hwmon: 'hwmon0', debounce: { readings: setting.readings } }],
    }),
    {
      actions: { stopServing: noop, wipeSecrets: noop, journal: noop, notifyControlPlane: noop },
      tpm: client,
      stateDir: await mkdtemp(join(base, 'state-')),
      deviceId: 'bench',
      bindingKey: 'B'.repeat(43),
      onLocked: done,
    },
  );
  await guard.start();
  const t0 = performance.now();
  await sysfs.intrusion(1);
  const report = await locked;
  const ms = performance.now() - t0;
  await guard.stop();
  return { ms, report };
}

function line(name: string, xs: number[]): string {
  return `  ${name.padEnd(44)} p50 ${percentile(xs, 50).toFixed(1).padStart(7)} ms  p99 ${percentile(xs, 99).toFixed(1).padStart(7)} ms  (min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)})`;
}

async function main(): Promise<void> {
  const base = await mkdtemp(join(tmpdir(), 'eg-bench-tamper-'));
  const sysfs = await makeSysfs();
  let swtpm: Swtpm | undefined;
  try {
    const tcti = opt('--tcti') ?? (swtpm = await startSwtpm()).tcti;
    const client = new TpmClient({ tcti });
    const extend: number[] = [];
    await client.extendPcr(16, 'sha256', Buffer.alloc(32, 1));
    for (let i = 0; i < RUNS; i++) {
      const t = performance.now();
      await client.extendPcr(16, 'sha256', Buffer.alloc(32, i));
      extend.push(performance.now() - t);
    }
    const out = [
      `machine: ${machine({ load: true })}`,
      `tpm2-tools: ${execSync('tpm2_pcrextend --version', { encoding: 'utf8' }).trim()}; TPM: ${swtpm ? 'swtpm' : tcti}`,
      `${RUNS} runs each:`,
      line('baseline: one bare PCR extend', extend),
    ];
    for (const setting of [
      { pollIntervalMs: 200, readings: 2 },
      { pollIntervalMs: 20, readings: 1 },
    ]) {
      const total: number[] = [];
      const response: number[] = [];
      const extendStep: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const { ms, report } = await edgeToLocked(sysfs, client, base, setting);
        if (!report.ok) throw new Error(`the response failed: ${JSON.stringify(report.steps)}`);
        total.push(ms);
        response.push(report.totalMs);
        extendStep.push(report.steps.find((s) => s.step === 'extendPcr')!.ms);
      }
      const name = `poll ${setting.pollIntervalMs} ms, ${setting.readings} reading(s)`;
      out.push(line(`edge -> locked (${name})`, total), line(`  of which the response`, response));
      out.push(line(`  of which its PCR extend step`, extendStep));
    }
    process.stdout.write(out.join('\n') + '\n');
  } finally {
    await swtpm?.remove();
    await sysfs.remove();
    await rm(base, { recursive: true, force: true });
  }
}

await main();
