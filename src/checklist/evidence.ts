/**
 * Evidence and probes shared by the checks: file digests, a bounded walk of the agent's
 * directories, and what a file's first bytes say it is (an ONNX model, an image, a NumPy array).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, open, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';

/** A walk stops here: the agent's directories are small, and a huge tree is itself a finding. */
export const MAX_WALK_FILES = 20_000;
const MAX_WALK_DEPTH = 6;
const HEAD_BYTES = 64 * 1024;

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function exists(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined)) !== undefined;
}

/** Regular files under `dirs` (symbolic links are not followed), each directory once. */
export async function walkFiles(dirs: readonly string[]): Promise<{ files: string[]; truncated: boolean }> {
  const seen = new Set<string>();
  const files: string[] = [];
  const visit = async (dir: string, depth: number): Promise<void> => {
    if (seen.has(dir) || depth > MAX_WALK_DEPTH || files.length >= MAX_WALK_FILES) return;
    seen.add(dir);
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const path = join(dir, e.name);
      if (e.isDirectory()) await visit(path, depth + 1);
      else if (e.isFile() && files.length < MAX_WALK_FILES) files.push(path);
    }
  };
  for (const dir of dirs) await visit(resolve(dir), 0);
  return { files: [...new Set(files)].sort(), truncated: files.length >= MAX_WALK_FILES };
}

export async function readHead(path: string, bytes = HEAD_BYTES): Promise<{ head: Buffer; size: number }> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const head = Buffer.alloc(Math.min(bytes, size));
    await handle.read(head, 0, head.length, 0);
    return { head, size };
  } finally {
    await handle.close();
  }
}

// An ONNX file is a protobuf ModelProto (onnx.proto): it starts with field 1, ir_version, as a
// varint (tag 0x08), followed by another length-delimited or varint field of the model.
const ONNX_NEXT_TAGS = new Set([0x12, 0x1a, 0x22, 0x2a, 0x32, 0x3a, 0x42, 0x52, 0x72]);

export function looksLikeOnnx(head: Uint8Array): boolean {
  return head.length >= 3 && head[0] === 0x08 && head[1]! >= 1 && head[1]! <= 0x7f && ONNX_NEXT_TAGS.has(head[2]!);
}

export type InputKind = 'PNG image' | 'JPEG image' | 'NumPy array';

/** PNG (RFC 2083 signature), JPEG (SOI + marker), NumPy .npy (format 1.0 magic). */
export function inputKindOf(head: Uint8Array): InputKind | undefined {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'PNG image';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'JPEG image';
  if (b.subarray(0, 6).equals(Buffer.from('\x93NUMPY', 'latin1'))) return 'NumPy array';
  return undefined;
}

/** Shannon entropy in bits per byte: ciphertext is close to 8, models and text well below. */
export function byteEntropy(data: Uint8Array): number {
  if (data.length === 0) return 0;
  const counts = new Array<number>(256).fill(0);
  for (const byte of data) counts[byte]!++;
  let bits = 0;
  for (const c of counts) if (c > 0) bits -= (c / data.length) * Math.log2(c / data.length);
  return bits;
}
