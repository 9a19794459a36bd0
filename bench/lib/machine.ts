/** The machine a benchmark ran on, for the figures in docs/benchmarks.md. */
import { execSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';

export function machine(options: { load?: boolean } = {}): string {
  let model = 'unknown';
  try {
    model = execSync("lscpu | sed -n 's/^Model name:[ ]*//p'", { encoding: 'utf8' }).trim();
  } catch {
    model = cpus()[0]?.model ?? 'unknown';
  }
  const load = options.load
    ? `, load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`
    : '';
  return `${model}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Node ${process.version}${load}`;
}
