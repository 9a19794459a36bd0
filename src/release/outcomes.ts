/**
 * Install outcomes waiting for the agent's journal: `edgeguard agent update` may run while the
 * agent serves (which holds the journal), so each outcome is written as its own file under
 * releases/reports/ and the agent journals and removes it (at start and when it sees a switch).
 * A crash between the journal append and the removal journals that outcome twice, never zero times.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fsError } from '../errors/index.ts';
import { replaceFileDurablySync } from './durable-file.ts';
import type { InstallOutcome } from './install.ts';
import { slotsDir } from './slots.ts';

const MAX_REPORTS = 1000;

function reportsDir(dataDir: string): string {
  return join(slotsDir(dataDir), 'reports');
}

export async function recordOutcome(dataDir: string, outcome: InstallOutcome): Promise<void> {
  const dir = reportsDir(dataDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();
  // Bounded: the oldest go first when no agent has collected them for a long time.
  for (const n of names.slice(0, Math.max(0, names.length - MAX_REPORTS + 1))) await rm(join(dir, n), { force: true });
  const name = `${String(Date.now()).padStart(15, '0')}-${randomBytes(4).toString('hex')}.json`;
  replaceFileDurablySync(join(dir, name), JSON.stringify(outcome) + '\n');
}

export interface PendingOutcome {
  outcome: InstallOutcome;
  /** Remove the report once it is journaled. */
  done(): Promise<void>;
}

/** Recorded outcomes, oldest first; a report that does not parse is removed (it was never complete). */
export async function pendingOutcomes(dataDir: string): Promise<PendingOutcome[]> {
  const dir = reportsDir(dataDir);
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fsError(e, dir, 'read the install reports');
  }
  const out: PendingOutcome[] = [];
  for (const n of names) {
    const path = join(dir, n);
    const done = () => rm(path, { force: true });
    try {
      out.push({ outcome: JSON.parse(await readFile(path, 'utf8')) as InstallOutcome, done });
    } catch {
      await done();
    }
  }
  return out;
}
