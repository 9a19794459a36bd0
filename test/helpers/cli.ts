/** Run the real CLI as a child process (the way an operator or a pipeline does). */
import { spawn } from 'node:child_process';
import { CLI } from './workspace.ts';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; wrapper?: string[] } = {},
): Promise<CliResult> {
  // A wrapper runs the CLI under another command (e.g. ip netns exec NAME).
  const [command, ...argv] = [...(opts.wrapper ?? []), process.execPath, CLI, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(command!, argv, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

/** `edgeguard demo --only STEPS --json`, which must pass: the result of its step `id`. */
export async function demoStepResult(steps: string, id: string): Promise<Record<string, unknown>> {
  const r = await runCli(['demo', '--only', steps, '--json']);
  if (r.code !== 0) throw new Error(`demo --only ${steps} exited ${r.code}: ${r.stderr}`);
  const report = JSON.parse(r.stdout) as { steps: Array<{ id: string; ok: boolean; result: Record<string, unknown> }> };
  const step = report.steps.find((s) => s.id === id);
  if (!step?.ok) throw new Error(`demo step ${id} did not pass: ${r.stdout}`);
  return step.result;
}
