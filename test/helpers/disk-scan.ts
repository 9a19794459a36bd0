/**
 * "Nothing plaintext on disk" checks: find every regular file created or modified since a marker
 * time, anywhere on the root file system and in the given folders, and search them for needles.
 */
import { execFile } from 'node:child_process';
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function filesChangedSince(sinceMs: number, roots: string[], wholeFs = true): Promise<string[]> {
  const found = new Set<string>();
  for (const r of roots) for (const f of await walk(r)) found.add(f);
  if (wholeFs) {
    const minutes = Math.max(1, Math.ceil((Date.now() - sinceMs) / 60000) + 1);
    const { stdout } = await run(
      'find',
      [
        '/',
        '-xdev',
        '(',
        '-path',
        '/proc',
        '-o',
        '-path',
        '/sys',
        '-o',
        '-path',
        '/dev',
        '-o',
        '-path',
        '/run',
        ')',
        '-prune',
        '-o',
        '-type',
        'f',
        '-mmin',
        `-${minutes}`,
        '-print',
      ],
      { maxBuffer: 256 * 1024 * 1024 },
    ).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
    for (const line of stdout.split('\n')) if (line) found.add(line);
  }
  const recent: string[] = [];
  for (const f of found) {
    const st = await stat(f).catch(() => undefined);
    if (st?.isFile() && Math.max(st.mtimeMs, st.ctimeMs) >= sinceMs - 1000) recent.push(f);
  }
  return recent;
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** Files among `files` that contain any of the needles (read in 8 MiB windows with overlap). */
export async function filesContaining(
  files: string[],
  needles: Buffer[],
  maxBytes = 512 * 1024 * 1024,
): Promise<Array<{ file: string; needle: number }>> {
  const hits: Array<{ file: string; needle: number }> = [];
  const overlap = Math.max(...needles.map((n) => n.length));
  const window = 8 * 1024 * 1024;
  for (const f of files) {
    const fh = await open(f, 'r').catch(() => undefined);
    if (!fh) continue;
    try {
      const size = Math.min((await fh.stat()).size, maxBytes);
      const buf = Buffer.alloc(window + overlap);
      for (let pos = 0; pos < size; pos += window) {
        const { bytesRead } = await fh.read(buf, 0, window + overlap, pos);
        const view = buf.subarray(0, bytesRead);
        const i = needles.findIndex((n) => view.includes(n));
        if (i >= 0) {
          hits.push({ file: f, needle: i });
          break;
        }
      }
    } finally {
      await fh.close();
    }
  }
  return hits;
}
