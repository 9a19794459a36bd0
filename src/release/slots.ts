/**
 * The device's A/B release slots (docs/formats.md, "Release slots"), after RAUC's and Mender's
 * A/B scheme: two slot directories and one pointer file naming the active one.
 *
 *   DIR/releases/active          pointer: which slot serves, bound to that slot's manifest digest
 *   DIR/releases/a/, b/          package.egm, package.egm.sig.json, [content.key.wrapped], slot.json
 *   DIR/releases/.staging-*      an install being written (discarded at start)
 *
 * An install never writes into the active slot: it stages a directory, fsyncs every file and the
 * directory, renames it to the inactive slot, and only then replaces the pointer (temp file,
 * fsync, rename, directory fsync). So a crash at any point leaves the pointer naming a complete
 * slot: the old one until the rename of the pointer, the new one after it.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { syncDirectory, writePrivateFile } from '../crypto/index.ts';
import { EdgeguardError, FILE_CAPS, fsError, isEdgeguardError, readBoundedText } from '../errors/index.ts';
import { replaceFileDurablySync } from './durable-file.ts';
import { RELEASE_KINDS } from './release-target.ts';

export const SLOT_NAMES = ['a', 'b'] as const;
export type SlotName = (typeof SLOT_NAMES)[number];

export const SLOT_FILES = {
  package: 'package.egm',
  signature: 'package.egm.sig.json',
  wrappedKey: 'content.key.wrapped',
  manifest: 'slot.json',
} as const;

const SLOT_TYPE = 'edgeguard-slot';
const POINTER_TYPE = 'edgeguard-active-slot';
const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const fileEntry = z.strictObject({ sha256: hex64, length: z.number().int().min(0) });

const manifestSchema = z.strictObject({
  type: z.literal(SLOT_TYPE),
  version: z.literal(1),
  release: z.strictObject({
    kind: z.enum(RELEASE_KINDS),
    name: z.string().min(1).max(128),
    version: z.number().int().min(0),
    minVersion: z.number().int().min(0),
  }),
  headerSha256: hex64,
  files: z.partialRecord(z.enum([SLOT_FILES.package, SLOT_FILES.signature, SLOT_FILES.wrappedKey]), fileEntry),
  installedAt: z.string().max(64),
});
export type SlotManifest = z.infer<typeof manifestSchema>;

const slotRef = z.strictObject({ slot: z.enum(SLOT_NAMES), manifestSha256: hex64 });
const pointerSchema = z.strictObject({
  type: z.literal(POINTER_TYPE),
  version: z.literal(1),
  active: slotRef,
  /** The slot that was active before, kept for a return to it; any other inactive slot is discarded. */
  previous: slotRef.optional(),
});
export type SlotPointer = z.infer<typeof pointerSchema>;

/** A complete slot: its manifest checked against the pointer and every file against the manifest. */
export interface VerifiedSlot {
  slot: SlotName;
  dir: string;
  manifest: SlotManifest;
  manifestSha256: string;
  packagePath: string;
  signaturePath: string;
  wrappedKeyPath?: string | undefined;
}

export function slotsDir(dataDir: string): string {
  return join(dataDir, 'releases');
}

export function otherSlot(s: SlotName): SlotName {
  return s === 'a' ? 'b' : 'a';
}

function pointerPath(dataDir: string): string {
  return join(slotsDir(dataDir), 'active');
}

async function sha256File(path: string): Promise<{ sha256: string; length: number }> {
  const hash = createHash('sha256');
  let length = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    length += chunk.length;
  }
  return { sha256: hash.digest('hex'), length };
}

const tampered = (what: string) =>
  new EdgeguardError(
    'EG_TAMPERED',
    `${what}; the release slots were altered outside the installer. Reinstall a release (edgeguard agent update) or restore the device.`,
  );

/** The pointer, or undefined before the first install. A pointer that does not parse is tampering: it is only ever replaced whole. */
export async function readPointer(dataDir: string): Promise<SlotPointer | undefined> {
  const path = pointerPath(dataDir);
  let text: string;
  try {
    text = await readBoundedText(path, FILE_CAPS.config, 'read the active slot pointer');
  } catch (e) {
    if (isEdgeguardError(e, 'EG_NOT_FOUND')) return undefined;
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw tampered(`${path} is not JSON`);
  }
  const r = pointerSchema.safeParse(json);
  if (!r.success) throw tampered(`${path} is not an active slot pointer`);
  return r.data;
}

/** Replace the pointer durably: temp file, fsync, rename, directory fsync. */
export function writePointer(dataDir: string, pointer: SlotPointer): void {
  replaceFileDurablySync(pointerPath(dataDir), JSON.stringify(pointer, null, 2) + '\n');
}

/** Read and check a slot: manifest digest (when the pointer names one) and every file's length and SHA-256. */
export async function verifySlot(dataDir: string, slot: SlotName, manifestSha256?: string): Promise<VerifiedSlot> {
  const dir = join(slotsDir(dataDir), slot);
  let bytes: Buffer;
  try {
    bytes = await readFile(join(dir, SLOT_FILES.manifest));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw tampered(`slot ${slot} has no ${SLOT_FILES.manifest}`);
    throw fsError(e, join(dir, SLOT_FILES.manifest), 'read the slot manifest');
  }
  const digest = createHash('sha256').update(bytes).digest('hex');
  if (manifestSha256 !== undefined && digest !== manifestSha256)
    throw tampered(`slot ${slot}'s manifest is not the one the active pointer names`);
  let manifest: SlotManifest;
  try {
    manifest = manifestSchema.parse(JSON.parse(bytes.toString('utf8')));
  } catch {
    throw tampered(`slot ${slot}'s ${SLOT_FILES.manifest} does not parse`);
  }
  if (!manifest.files[SLOT_FILES.package] || !manifest.files[SLOT_FILES.signature])
    throw tampered(`slot ${slot}'s manifest names no package or signature`);
  for (const [name, want] of Object.entries(manifest.files)) {
    const got = await sha256File(join(dir, name)).catch(() => undefined);
    if (!got || got.sha256 !== want.sha256 || got.length !== want.length)
      throw tampered(`slot ${slot}'s ${name} does not match its manifest`);
  }
  return {
    slot,
    dir,
    manifest,
    manifestSha256: digest,
    packagePath: join(dir, SLOT_FILES.package),
    signaturePath: join(dir, SLOT_FILES.signature),
    ...(manifest.files[SLOT_FILES.wrappedKey] ? { wrappedKeyPath: join(dir, SLOT_FILES.wrappedKey) } : {}),
  };
}

export interface SlotState {
  pointer: SlotPointer | undefined;
  /** What serves; undefined before the first install. */
  active: VerifiedSlot | undefined;
  /** The slot that was active before, when it is still complete. */
  previous: VerifiedSlot | undefined;
}

/**
 * Start-up recovery: staging directories and temp files of an interrupted install are removed,
 * an inactive slot the pointer does not name as `previous` (a half-placed install) is removed,
 * and the active slot is checked whole. The active slot failing its check is tampering: nothing
 * the installer does can cause it, so it fails closed rather than serve something unverified.
 */
export async function recoverSlots(dataDir: string): Promise<SlotState> {
  const root = slotsDir(dataDir);
  await mkdir(root, { recursive: true, mode: 0o700 });
  let removed = false;
  for (const name of await readdir(root)) {
    if (name.startsWith('.staging-') || name.includes('.tmp-')) {
      await rm(join(root, name), { recursive: true, force: true });
      removed = true;
    }
  }
  const pointer = await readPointer(dataDir);
  const active = pointer ? await verifySlot(dataDir, pointer.active.slot, pointer.active.manifestSha256) : undefined;
  let previous: VerifiedSlot | undefined;
  for (const s of SLOT_NAMES) {
    if (s === pointer?.active.slot) continue;
    const exists = await stat(join(root, s)).catch(() => undefined);
    if (!exists) continue;
    const ref = pointer?.previous?.slot === s ? pointer.previous : undefined;
    previous = ref ? await verifySlot(dataDir, s, ref.manifestSha256).catch(() => undefined) : undefined;
    if (!previous) {
      await rm(join(root, s), { recursive: true, force: true });
      removed = true;
    }
  }
  if (removed) await syncDirectory(root);
  return { pointer, active, previous };
}

/** The slots as they are, nothing removed: the active one checked whole (a reader beside a running install). */
export async function readSlots(dataDir: string): Promise<SlotState> {
  const pointer = await readPointer(dataDir);
  const active = pointer ? await verifySlot(dataDir, pointer.active.slot, pointer.active.manifestSha256) : undefined;
  return { pointer, active, previous: undefined };
}

/** A new staging directory (mode 0700) for slot `slot`. */
export async function createStaging(dataDir: string, slot: SlotName): Promise<string> {
  const dir = join(slotsDir(dataDir), `.staging-${slot}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** Write a file into a staging directory and fsync it; returns its manifest entry. */
export async function writeStagedFile(
  dir: string,
  name: string,
  bytes: Uint8Array,
): Promise<{ sha256: string; length: number }> {
  await writePrivateFile(join(dir, name), bytes);
  return { sha256: createHash('sha256').update(bytes).digest('hex'), length: bytes.length };
}

/** The manifest goes in last; the directory is fsynced so every entry is on disk before the rename. */
export async function sealStaging(dir: string, manifest: SlotManifest): Promise<string> {
  const bytes = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
  await writeStagedFile(dir, SLOT_FILES.manifest, bytes);
  await syncDirectory(dir);
  return createHash('sha256').update(bytes).digest('hex');
}

/** Remove the inactive slot and rename the staging directory into its place. */
export async function placeStaging(dataDir: string, staging: string, slot: SlotName): Promise<void> {
  const root = slotsDir(dataDir);
  await rm(join(root, slot), { recursive: true, force: true });
  await syncDirectory(root);
  await rename(staging, join(root, slot));
  await syncDirectory(root);
}
