/**
 * Reading and writing the repository's signed metadata (TUF specification 1.0, section 5.1:
 * with consistent snapshots, VERSION.root.json, VERSION.targets.json, VERSION.snapshot.json and an
 * unversioned timestamp.json). Every file is replaced durably, and the timestamp last, so a client
 * polling during a publish sees the old release or the new one.
 */
import { join } from 'node:path';
import { Metadata, MetadataKind, Root, type Snapshot, type Targets, type Timestamp } from '@tufjs/models';
import { EdgeguardError, FILE_CAPS, readBoundedText } from '../errors/index.ts';
import { replaceFileDurablySync } from './durable-file.ts';

export function metadataFileName(kind: MetadataKind, version: number): string {
  return kind === MetadataKind.Timestamp ? 'timestamp.json' : `${version}.${kind}.json`;
}

export function writeMetadata(dir: string, md: Metadata<Root | Targets | Snapshot | Timestamp>): void {
  const bytes = JSON.stringify(md.toJSON(), null, 2) + '\n';
  replaceFileDurablySync(join(dir, metadataFileName(md.signed.type, md.signed.version)), bytes);
  // The newest root also under a fixed name: what a device is provisioned with as its first trust.
  if (md.signed.type === MetadataKind.Root) replaceFileDurablySync(join(dir, 'root.json'), bytes);
}

type JSONObject = Parameters<typeof Root.fromJSON>[0];

async function readJson(path: string): Promise<JSONObject> {
  const text = await readBoundedText(path, FILE_CAPS.config, 'read repository metadata');
  try {
    return JSON.parse(text) as JSONObject;
  } catch (e) {
    throw new EdgeguardError('EG_FORMAT', `${path} is not JSON; restore the repository from its backup.`, {
      cause: e,
    });
  }
}

export interface CurrentMetadata {
  root: Metadata<Root>;
  targets: Metadata<Targets>;
  snapshot: Metadata<Snapshot>;
  timestamp: Metadata<Timestamp>;
}

/** The published state, followed from timestamp.json down as a client would. */
export async function readCurrentMetadata(dir: string): Promise<CurrentMetadata> {
  try {
    const root = Metadata.fromJSON(MetadataKind.Root, await readJson(join(dir, 'root.json')));
    const timestamp = Metadata.fromJSON(MetadataKind.Timestamp, await readJson(join(dir, 'timestamp.json')));
    const snapshotVersion = timestamp.signed.snapshotMeta.version;
    const snapshot = Metadata.fromJSON(
      MetadataKind.Snapshot,
      await readJson(join(dir, metadataFileName(MetadataKind.Snapshot, snapshotVersion))),
    );
    const targetsVersion = snapshot.signed.meta['targets.json']?.version ?? 0;
    const targets = Metadata.fromJSON(
      MetadataKind.Targets,
      await readJson(join(dir, metadataFileName(MetadataKind.Targets, targetsVersion))),
    );
    return { root, targets, snapshot, timestamp };
  } catch (e) {
    if (e instanceof EdgeguardError) throw e;
    throw new EdgeguardError('EG_FORMAT', `the repository metadata in ${dir} does not parse; restore it.`, {
      cause: e,
    });
  }
}
