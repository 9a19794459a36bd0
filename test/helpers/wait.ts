/**
 * Waiting in tests without guessing how fast the machine is: a condition polled until a generous
 * deadline, and a child process awaited on its own signal (a line it prints). A failure says what
 * was awaited and, for a child, everything it printed. No test waits a fixed time for a child.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

/** Long enough for a cold start on a 2-core machine under full load; only failures wait this long. */
export const DEADLINE_MS = 120_000;

/** Poll `cond` until it returns a value other than undefined/false; throw naming `what` at the deadline. */
export async function eventually<T>(
  what: string,
  cond: () => T | undefined | false | Promise<T | undefined | false>,
  o: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (o.timeoutMs ?? DEADLINE_MS);
  for (;;) {
    const v = await cond();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${o.timeoutMs ?? DEADLINE_MS} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 50));
  }
}

export interface StartedChild<T> {
  child: ChildProcess;
  /** What `ready` returned once the child signalled it. */
  value: T;
  /** Everything the child printed so far (stdout, then stderr). */
  output(): { stdout: string; stderr: string };
}

/**
 * Spawn `command` and resolve once `ready(stdout, stderr)` returns a value: the child's own start
 * line, not a guess. Rejects with the child's output if it exits first or the deadline passes.
 * The caller ends the child (`child.kill()`).
 */
export function startChild<T>(
  command: string,
  args: string[],
  ready: (stdout: string, stderr: string) => T | undefined,
  o: SpawnOptions & { what?: string; timeoutMs?: number } = {},
): Promise<StartedChild<T>> {
  const { what = [command, ...args].join(' '), timeoutMs = DEADLINE_MS, ...spawnOptions } = o;
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...spawnOptions });
  let stdout = '';
  let stderr = '';
  const output = () => ({ stdout, stderr });
  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      if (child.exitCode === null) child.kill('SIGKILL');
      reject(new Error(`${what} ${why}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`));
    };
    const timer = setTimeout(() => fail(`did not signal readiness within ${timeoutMs} ms`), timeoutMs);
    const check = () => {
      const v = ready(stdout, stderr);
      if (v === undefined) return;
      clearTimeout(timer);
      child.off('exit', onExit);
      resolve({ child, value: v, output });
    };
    const onExit = (code: number | null, signal: string | null) =>
      fail(`exited (${signal ?? code}) before it was ready`);
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      check();
    });
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      check();
    });
    child.on('error', (e) => fail(`could not start (${e.message})`));
    child.on('exit', onExit);
  });
}
