/**
 * The step boundaries of an install, named, so the crash test (test/release/install-crash.test.ts)
 * can kill the installing process exactly between two steps. The hook is an environment variable
 * the test harness sets on a child process; it is not an option of any API or command:
 *
 *   EDGEGUARD_INSTALL_STEP_HOOK=print        each boundary's name on stdout ("install-step NAME")
 *   EDGEGUARD_INSTALL_STEP_HOOK=kill:NAME    the same, then SIGKILL to itself at boundary NAME
 *   EDGEGUARD_INSTALL_STEP_HOOK=stop:NAME    the same, then SIGSTOP to itself at boundary NAME (the
 *                                            harness resumes it with SIGCONT: an install paused
 *                                            mid-way, holding the install lock)
 */
import { writeSync } from 'node:fs';

export const INSTALL_STEPS = [
  'start',
  'fetched',
  'staged',
  'placed',
  'trial-loaded',
  'switched',
  'committed',
  'handed-off',
  'done',
] as const;
export type InstallStep = (typeof INSTALL_STEPS)[number];

const HOOK = 'EDGEGUARD_INSTALL_STEP_HOOK';

export function stepBoundary(step: InstallStep): void {
  const hook = process.env[HOOK];
  if (!hook) return;
  // Synchronous: the line is out before a kill that follows it.
  writeSync(1, `install-step ${step}\n`);
  if (hook === `kill:${step}`) process.kill(process.pid, 'SIGKILL');
  if (hook === `stop:${step}`) process.kill(process.pid, 'SIGSTOP');
}
