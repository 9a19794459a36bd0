/**
 * Targets added since the last publish (staged-targets.json): TUF target entries, already copied
 * into the repository under their hash-prefixed names, waiting for `release publish` to sign them.
 */
import { readFile, rm } from 'node:fs/promises';
import { TargetFile } from '@tufjs/models';
import { EdgeguardError, fsError } from '../errors/index.ts';
import { replaceFileDurablySync } from './durable-file.ts';

export async function readStagedTargets(path: string): Promise<Record<string, TargetFile>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw fsError(e, path, 'read the staged targets');
  }
  try {
    const json = JSON.parse(text) as Record<string, Record<string, unknown>>;
    return Object.fromEntries(Object.entries(json).map(([p, t]) => [p, TargetFile.fromJSON(p, t as never)]));
  } catch (e) {
    throw new EdgeguardError('EG_FORMAT', `${path} does not parse; remove it and add the releases again.`, {
      cause: e,
    });
  }
}

export async function stageTargets(path: string, added: TargetFile[]): Promise<void> {
  const staged = await readStagedTargets(path);
  for (const t of added) staged[t.path] = t;
  const json = Object.fromEntries(Object.entries(staged).map(([p, t]) => [p, t.toJSON()]));
  replaceFileDurablySync(path, JSON.stringify(json, null, 2) + '\n');
}

export async function clearStagedTargets(path: string): Promise<void> {
  await rm(path, { force: true });
}
