/**
 * The full consistency check: rebuild the tree from every stored entry and compare each leaf,
 * every stored subtree hash, every signed checkpoint root and the state row. An edited, deleted
 * or inserted row in any audit table shows up as a problem here.
 */
import { openCheckpoint } from './checkpoint.ts';
import { CompactRange, EMPTY_ROOT, hashLeaf, type NodeId } from './merkle.ts';
import type { NoteVerifier } from './note.ts';
import type { AuditStorage, StoredCheckpoint, TreeState } from './storage.ts';

export interface ConsistencyReport {
  size: number;
  checkpointsChecked: number;
  problems: string[];
}

type Report = (problem: string) => void;
type Produced = Array<{ id: NodeId; hash: Buffer }>;

export async function checkConsistency(
  storage: AuditStorage,
  log: { verifier: NoteVerifier; origin: string },
  opts: { pageSize?: number; maxProblems?: number } = {},
): Promise<ConsistencyReport> {
  const pageSize = opts.pageSize ?? 5000;
  const maxProblems = opts.maxProblems ?? 20;
  const problems: string[] = [];
  const report: Report = (p) => {
    if (problems.length < maxProblems) problems.push(p);
  };
  const state = await storage.readState();
  const checkpoints = await storage.checkpoints();
  checkSignatures(checkpoints, log, report);
  const edge = new CompactRange();
  const checkRoots = rootChecker(checkpoints, edge, report);
  checkRoots();
  for (let next = 0; ; next = edge.size) {
    const rows = await storage.entriesFrom(next, pageSize);
    if (rows.length === 0) break;
    const produced: Produced = [];
    for (const r of rows) {
      if (r.idx !== edge.size) {
        report(`log entries ${edge.size}..${r.idx - 1} are missing from the store`);
        // The tree cannot be rebuilt past a hole: compare what was rebuilt, then stop.
        await compareNodes(storage, produced, report);
        reportBeyond(checkpoints, edge.size, report);
        return { size: state.size, checkpointsChecked: checkpoints.length, problems };
      }
      edge.append(hashLeaf(Buffer.from(r.value, 'utf8')), (id, hash) => produced.push({ id, hash }));
      checkRoots();
    }
    await compareNodes(storage, produced, report);
  }
  reportBeyond(checkpoints, edge.size, report);
  compareState(state, edge, problems);
  return { size: state.size, checkpointsChecked: checkpoints.length, problems };
}

function checkSignatures(
  checkpoints: readonly StoredCheckpoint[],
  log: { verifier: NoteVerifier; origin: string },
  report: Report,
): void {
  for (const cp of checkpoints) {
    try {
      const opened = openCheckpoint(cp.note, log.verifier, log.origin);
      if (opened.checkpoint.size !== cp.size || !opened.checkpoint.rootHash.equals(cp.root))
        report(`checkpoint row ${cp.size} does not match its signed note`);
    } catch (e) {
      report(`checkpoint row ${cp.size} does not carry a valid signature (${(e as Error).message})`);
    }
  }
}

/** Compares each checkpoint root as the rebuilt tree reaches its size. */
function rootChecker(checkpoints: readonly StoredCheckpoint[], edge: CompactRange, report: Report): () => void {
  let at = 0;
  return () => {
    while (at < checkpoints.length && (checkpoints[at] as StoredCheckpoint).size <= edge.size) {
      const cp = checkpoints[at] as StoredCheckpoint;
      if (cp.size === edge.size) {
        const root = edge.size === 0 ? EMPTY_ROOT : edge.root();
        if (!root.equals(cp.root))
          report(
            `the entries do not hash to the root signed at size ${cp.size}: an entry before index ${cp.size} was altered or removed`,
          );
      } else {
        report(`checkpoint at size ${cp.size} could not be checked because entries are missing`);
      }
      at += 1;
    }
  };
}

/** A signed checkpoint larger than the rebuilt tree: entries it covers were removed after signing. */
function reportBeyond(checkpoints: readonly StoredCheckpoint[], rebuilt: number, report: Report): void {
  for (const cp of checkpoints)
    if (cp.size > rebuilt)
      report(
        `the checkpoint at size ${cp.size} was signed beyond the ${rebuilt} entries stored: entries ${rebuilt}..${cp.size - 1} were removed (or a backup older than the checkpoint was restored)`,
      );
}

function compareState(state: TreeState, edge: CompactRange, problems: string[]): void {
  if (edge.size !== state.size) problems.push(`the log state says ${state.size} entries but ${edge.size} are stored`);
  else if (!(edge.size === 0 ? EMPTY_ROOT : edge.root()).equals(state.root))
    problems.push(`the stored entries do not hash to the recorded root`);
}

async function compareNodes(storage: AuditStorage, produced: Produced, report: Report): Promise<void> {
  const byLevel = new Map<number, Produced>();
  for (const p of produced) {
    const list = byLevel.get(p.id.level) ?? [];
    list.push(p);
    byLevel.set(p.id.level, list);
  }
  for (const [level, list] of byLevel) {
    const lo = (list[0] as Produced[number]).id.index;
    const hi = (list[list.length - 1] as Produced[number]).id.index;
    const stored = new Map((await storage.nodesAtLevel(level, lo, hi + 1)).map((r) => [r.idx, r.value]));
    for (const p of list) {
      const s = stored.get(p.id.index);
      if (s === undefined) report(`tree node ${level}/${p.id.index} is missing from the store`);
      else if (s !== p.hash.toString('hex')) {
        report(
          level === 0
            ? `log entry ${p.id.index} does not match its stored leaf hash: the entry or its hash was altered`
            : `tree node ${level}/${p.id.index} was altered`,
        );
      }
    }
  }
}
