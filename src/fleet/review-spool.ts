/**
 * The device's review spool: sealed review items (ciphertext only; see review-item.ts) waiting
 * for the control plane, in one directory (mode 0700), bounded by a count and a byte budget. When
 * a new item would exceed either bound, the OLDEST items are dropped, each with a log line and a
 * metric, so a long outage costs old evidence, never the disk or the service.
 *
 * File names: `<created ms, 16 digits>-<item id, 32 hex>.egr`, so the lexical order is the age
 * order. An item is written to `<name>.tmp` and renamed, so a reader never sees half an item.
 */
import { mkdir, readdir, readFile, rename, stat, unlink, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { EdgeguardError, fsError } from '../errors/index.ts';
import { parseReviewItem } from './review-item.ts';

export const SPOOL_SUFFIX = '.egr';
const NAME_RE = /^(\d{16})-([0-9a-f]{32})\.egr$/;

export interface SpoolEntry {
  name: string;
  id: string;
  createdMs: number;
  bytes: number;
}

export interface SpoolEvents {
  /** An item was dropped to stay within the limits. */
  dropped?(entry: SpoolEntry, reason: 'max-items' | 'max-bytes'): void;
  changed?(items: number, bytes: number): void;
}

export interface SpoolOptions {
  dir: string;
  maxItems: number;
  maxBytes: number;
  events?: SpoolEvents;
}

export function spoolFileName(createdMs: number, id: string): string {
  return `${String(createdMs).padStart(16, '0')}-${id}${SPOOL_SUFFIX}`;
}

export class ReviewSpool {
  readonly dir: string;
  readonly maxItems: number;
  readonly maxBytes: number;
  private readonly events: SpoolEvents;
  /** Oldest first. */
  private entries: SpoolEntry[] = [];
  private total = 0;

  private constructor(o: SpoolOptions) {
    this.dir = o.dir;
    this.maxItems = o.maxItems;
    this.maxBytes = o.maxBytes;
    this.events = o.events ?? {};
  }

  /** Open (creating it, mode 0700) and index the spool directory; stray temporary files are removed. */
  static async open(o: SpoolOptions): Promise<ReviewSpool> {
    const s = new ReviewSpool(o);
    try {
      await mkdir(o.dir, { recursive: true, mode: 0o700 });
      await chmod(o.dir, 0o700);
    } catch (e) {
      throw fsError(e, o.dir, 'create the review spool directory');
    }
    const names = (
      await readdir(o.dir).catch((e) => {
        throw fsError(e, o.dir, 'read the review spool directory');
      })
    ).sort();
    for (const name of names) {
      if (name.endsWith('.tmp')) {
        await unlink(join(o.dir, name)).catch(() => undefined);
        continue;
      }
      const m = NAME_RE.exec(name);
      if (!m) continue;
      const st = await stat(join(o.dir, name)).catch(() => undefined);
      if (!st?.isFile()) continue;
      s.entries.push({ name, id: m[2]!, createdMs: Number(m[1]), bytes: st.size });
      s.total += st.size;
    }
    await s.enforce(0);
    s.events.changed?.(s.entries.length, s.total);
    return s;
  }

  get items(): number {
    return this.entries.length;
  }

  get bytes(): number {
    return this.total;
  }

  list(): SpoolEntry[] {
    return [...this.entries];
  }

  /**
   * Drop the oldest items until one more item of `incoming` bytes fits (0: just enforce the
   * bounds). The bookkeeping is synchronous, so concurrent adds cannot overshoot; the files are
   * removed afterwards.
   */
  private async enforce(incoming: number): Promise<void> {
    const extra = incoming > 0 ? 1 : 0;
    const dropped: SpoolEntry[] = [];
    while (
      this.entries.length > 0 &&
      (this.entries.length + extra > this.maxItems || this.total + incoming > this.maxBytes)
    ) {
      const reason = this.entries.length + extra > this.maxItems ? 'max-items' : 'max-bytes';
      const old = this.entries.shift()!;
      this.total -= old.bytes;
      this.events.dropped?.(old, reason);
      dropped.push(old);
    }
    await Promise.all(dropped.map((d) => unlink(join(this.dir, d.name)).catch(() => undefined)));
  }

  /** Add a sealed item (its header is parsed, so only well-formed ciphertext enters the spool). */
  async add(item: Uint8Array): Promise<SpoolEntry> {
    const h = parseReviewItem(item, 'the sealed review item');
    if (item.length > this.maxBytes)
      throw new EdgeguardError(
        'EG_INPUT',
        `a sealed review item of ${item.length} bytes exceeds the spool budget of ${this.maxBytes} bytes.`,
      );
    const entry: SpoolEntry = {
      name: spoolFileName(h.createdMs, h.id),
      id: h.id,
      createdMs: h.createdMs,
      bytes: item.length,
    };
    // Reserve the space first (synchronously), so concurrent adds cannot overshoot the bounds.
    const pending = this.enforce(item.length);
    this.entries.push(entry);
    this.entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.total += item.length;
    await pending;
    const path = join(this.dir, entry.name);
    try {
      await writeFile(`${path}.tmp`, item, { mode: 0o600 });
      await rename(`${path}.tmp`, path);
    } catch (e) {
      this.forget(entry.name);
      await unlink(`${path}.tmp`).catch(() => undefined);
      throw fsError(e, path, 'write the review item');
    }
    // Dropped by a newer item while it was being written: do not leave it behind.
    if (!this.entries.includes(entry)) await unlink(path).catch(() => undefined);
    this.events.changed?.(this.entries.length, this.total);
    return entry;
  }

  async read(name: string): Promise<Buffer> {
    if (!NAME_RE.test(name)) throw new EdgeguardError('EG_USAGE', `${name} is not a spool item name.`);
    try {
      return await readFile(join(this.dir, name));
    } catch (e) {
      throw fsError(e, join(this.dir, name), 'read the review item');
    }
  }

  private forget(name: string): void {
    const i = this.entries.findIndex((e) => e.name === name);
    if (i >= 0) {
      this.total -= this.entries[i]!.bytes;
      this.entries.splice(i, 1);
    }
  }

  /** Remove an item (after it was delivered). */
  async remove(name: string): Promise<void> {
    this.forget(name);
    await unlink(join(this.dir, name)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw fsError(e, join(this.dir, name), 'remove the review item');
    });
    this.events.changed?.(this.entries.length, this.total);
  }
}
