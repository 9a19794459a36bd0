/**
 * The device's local audit journal: an append-only file of signed, hash-chained entries, written
 * with one write and one fsync per batch. Formats in docs/formats.md ("Device journal").
 *
 *   file   = magic "EGJRNL" 0x00 0x01, then records
 *   record = u32 length of the rest || body || u8 signature alg || u16 signature length || signature
 *   body   = u8 version (1) || u64 seq || prev[32] || u64 time (ms) || u32 payload length || payload
 *   payload = canonical JSON of one AuditEvent (events.ts)
 *   entry hash = SHA-256(body); prev of entry n = entry hash of entry n-1 (32 zero bytes for seq 0)
 *   signature  = Ed25519(body), or ECDSA P-256 with SHA-256 over body as IEEE P1363 r || s
 *
 * The chain check reports a deleted, inserted, reordered or altered entry as a gap at its
 * position (0-based index of the record in the file) and sequence number.
 */
import { createHash, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { EdgeguardError, fsError } from '../errors/index.ts';
import { canonicalJson, canonicalEventBytes, parseAuditEvent, type AuditEvent } from './events.ts';

export const JOURNAL_MAGIC = Buffer.from('EGJRNL\x00\x01', 'latin1');
export const JOURNAL_VERSION = 1;
/** Small enough that a forwarded entry, with its origin, still fits a 65535-byte log leaf. */
export const MAX_PAYLOAD_BYTES = 60_000;
export const ZERO_HASH = Buffer.alloc(32);
const BODY_FIXED = 1 + 8 + 32 + 8 + 4;
const MARK_EVERY = 256;

export type JournalAlgorithm = 'ed25519' | 'ecdsa-p256';
const ALG_IDS: Record<JournalAlgorithm, number> = { ed25519: 1, 'ecdsa-p256': 2 };
const SIG_LENGTHS: Record<JournalAlgorithm, number> = { ed25519: 64, 'ecdsa-p256': 64 };

export interface JournalEntry {
  seq: number;
  prev: Buffer;
  timeMs: number;
  event: AuditEvent;
  alg: JournalAlgorithm;
  signature: Buffer;
  /** SHA-256(body). */
  hash: Buffer;
  /** The encoded body, as signed. */
  body: Buffer;
}

/** Signs journal bodies: a software KeyObject, or a TPM-resident key behind the same shape. */
export interface JournalSigner {
  alg: JournalAlgorithm;
  sign(body: Buffer): Promise<Buffer> | Buffer;
}

export function journalAlgorithmOf(key: KeyObject): JournalAlgorithm {
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ecdsa-p256';
  throw new EdgeguardError(
    'EG_KEY_FORMAT',
    `a journal key must be Ed25519 or ECDSA P-256, not ${key.asymmetricKeyType ?? 'unknown'}.`,
  );
}

export function journalSignerFromKey(privateKey: KeyObject): JournalSigner {
  const alg = journalAlgorithmOf(privateKey);
  return {
    alg,
    sign: (body) =>
      alg === 'ed25519'
        ? cryptoSign(null, body, privateKey)
        : cryptoSign('sha256', body, { key: privateKey, dsaEncoding: 'ieee-p1363' }),
  };
}

export function verifyJournalSignature(
  alg: JournalAlgorithm,
  body: Uint8Array,
  signature: Uint8Array,
  publicKey: KeyObject,
): boolean {
  try {
    if (journalAlgorithmOf(publicKey) !== alg || signature.length !== SIG_LENGTHS[alg]) return false;
    return alg === 'ed25519'
      ? cryptoVerify(null, body, publicKey, signature)
      : cryptoVerify('sha256', body, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature);
  } catch {
    return false;
  }
}

/** The body bytes of an entry; also how the server rebuilds a device entry from a log leaf. */
export function encodeJournalBody(seq: number, prev: Uint8Array, timeMs: number, event: AuditEvent): Buffer {
  if (!Number.isSafeInteger(seq) || seq < 0 || !Number.isSafeInteger(timeMs) || timeMs < 0) {
    throw new EdgeguardError('EG_INTERNAL', 'journal sequence numbers and times are non-negative integers.');
  }
  if (prev.length !== 32) throw new EdgeguardError('EG_INTERNAL', 'a journal prev hash is 32 bytes.');
  const payload = canonicalEventBytes(event);
  if (payload.length > MAX_PAYLOAD_BYTES)
    throw new EdgeguardError(
      'EG_INPUT',
      `an audit event is ${payload.length} bytes; at most ${MAX_PAYLOAD_BYTES} fit in a journal entry.`,
    );
  const body = Buffer.alloc(BODY_FIXED + payload.length);
  body.writeUInt8(JOURNAL_VERSION, 0);
  body.writeBigUInt64BE(BigInt(seq), 1);
  Buffer.from(prev).copy(body, 9);
  body.writeBigUInt64BE(BigInt(timeMs), 41);
  body.writeUInt32BE(payload.length, 49);
  payload.copy(body, BODY_FIXED);
  return body;
}

export function encodeJournalRecord(entry: Pick<JournalEntry, 'body' | 'alg' | 'signature'>): Buffer {
  const rest = entry.body.length + 1 + 2 + entry.signature.length;
  const out = Buffer.alloc(4 + rest);
  out.writeUInt32BE(rest, 0);
  entry.body.copy(out, 4);
  let at = 4 + entry.body.length;
  out.writeUInt8(ALG_IDS[entry.alg], at);
  out.writeUInt16BE(entry.signature.length, at + 1);
  at += 3;
  entry.signature.copy(out, at);
  return out;
}

/** Decode one record (without its u32 length prefix): explicit lengths, no trailing bytes. */
export function decodeJournalRecord(rec: Uint8Array): JournalEntry {
  const buf = Buffer.from(rec.buffer, rec.byteOffset, rec.byteLength);
  const bad = (why: string) => new EdgeguardError('EG_FORMAT', `journal record is malformed: ${why}.`);
  if (buf.length < BODY_FIXED + 3) throw bad(`it is ${buf.length} bytes, shorter than the fixed fields`);
  const version = buf.readUInt8(0);
  if (version !== JOURNAL_VERSION) throw bad(`version ${version} is not ${JOURNAL_VERSION}`);
  const seq = safe(buf.readBigUInt64BE(1), 'sequence number');
  const prev = Buffer.from(buf.subarray(9, 41));
  const timeMs = safe(buf.readBigUInt64BE(41), 'time');
  const payloadLength = buf.readUInt32BE(49);
  if (payloadLength > MAX_PAYLOAD_BYTES) throw bad(`payload length ${payloadLength} exceeds ${MAX_PAYLOAD_BYTES}`);
  const bodyEnd = BODY_FIXED + payloadLength;
  if (buf.length < bodyEnd + 3) throw bad('the payload runs past the record');
  const payload = buf.subarray(BODY_FIXED, bodyEnd);
  const algId = buf.readUInt8(bodyEnd);
  const alg = (Object.keys(ALG_IDS) as JournalAlgorithm[]).find((a) => ALG_IDS[a] === algId);
  if (alg === undefined) throw bad(`signature algorithm ${algId} is unknown`);
  const sigLength = buf.readUInt16BE(bodyEnd + 1);
  if (sigLength !== SIG_LENGTHS[alg]) throw bad(`a ${alg} signature is ${SIG_LENGTHS[alg]} bytes, not ${sigLength}`);
  if (buf.length !== bodyEnd + 3 + sigLength)
    throw bad(`the record length does not match its fields (${buf.length - (bodyEnd + 3 + sigLength)} extra bytes)`);
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    throw bad('the payload is not JSON');
  }
  const event = parseAuditEvent(json, 'the journal event');
  if (!Buffer.from(canonicalJson(event), 'utf8').equals(payload)) throw bad('the payload is not canonical JSON');
  const body = Buffer.from(buf.subarray(0, bodyEnd));
  return {
    seq,
    prev,
    timeMs,
    event,
    alg,
    signature: Buffer.from(buf.subarray(bodyEnd + 3)),
    hash: createHash('sha256').update(body).digest(),
    body,
  };
}

function safe(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new EdgeguardError('EG_FORMAT', `journal record ${what} ${v} is out of range.`);
  return Number(v);
}

export interface ParsedJournal {
  entries: JournalEntry[];
  /** Set when the file stops being parseable: the position (record index) and byte offset. */
  damage?: { position: number; offset: number; reason: string };
}

/** Parse journal file bytes. Structural damage stops parsing and is reported, not thrown. */
export function parseJournal(bytes: Uint8Array): ParsedJournal {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < JOURNAL_MAGIC.length || !buf.subarray(0, JOURNAL_MAGIC.length).equals(JOURNAL_MAGIC)) {
    throw new EdgeguardError('EG_FORMAT', 'this is not an edgeguard journal (bad magic).');
  }
  const entries: JournalEntry[] = [];
  let at = JOURNAL_MAGIC.length;
  while (at < buf.length) {
    const position = entries.length;
    if (buf.length - at < 4) return { entries, damage: { position, offset: at, reason: 'truncated record length' } };
    const length = buf.readUInt32BE(at);
    if (length > BODY_FIXED + MAX_PAYLOAD_BYTES + 3 + 512)
      return { entries, damage: { position, offset: at, reason: `record length ${length} is impossible` } };
    if (buf.length - at - 4 < length)
      return { entries, damage: { position, offset: at, reason: 'truncated record (torn write or cut file)' } };
    try {
      entries.push(decodeJournalRecord(buf.subarray(at + 4, at + 4 + length)));
    } catch (e) {
      return { entries, damage: { position, offset: at, reason: (e as Error).message } };
    }
    at += 4 + length;
  }
  return { entries };
}

export interface JournalGap {
  /** Index of the entry (in the list checked) where the chain breaks. */
  position: number;
  expectedSeq: number;
  foundSeq?: number;
  kind: 'missing' | 'altered' | 'reordered' | 'damaged';
  reason: string;
}

export interface ChainHead {
  seq: number;
  hash: Buffer;
}

/** The head before the first entry: seq -1, hash of zeros, so the first entry has seq 0. */
export const GENESIS_HEAD: ChainHead = { seq: -1, hash: ZERO_HASH };

/**
 * Check entries as a chain continuing from `head`: each must carry seq = previous + 1, prev =
 * previous entry hash, and a valid signature under `publicKey`. Every break is reported as a
 * gap with its position; the check then resynchronises on the entry found.
 */
export function checkJournalChain(
  entries: readonly JournalEntry[],
  publicKey: KeyObject,
  head: ChainHead = GENESIS_HEAD,
): { gaps: JournalGap[]; head: ChainHead } {
  const gaps: JournalGap[] = [];
  let cur = head;
  // After an altered entry its true hash is unknown, so the next entry's prev cannot be checked.
  let hashKnown = true;
  entries.forEach((e, position) => {
    const expectedSeq = cur.seq + 1;
    if (!verifyJournalSignature(e.alg, e.body, e.signature, publicKey)) {
      gaps.push({
        position,
        expectedSeq,
        foundSeq: e.seq,
        kind: 'altered',
        reason: `entry ${position} (seq ${e.seq}) does not carry a valid device signature: it was altered or forged`,
      });
      // An altered entry cannot be trusted as the new head; keep the expectation of the next entry.
      cur = { seq: e.seq, hash: e.hash };
      hashKnown = false;
      return;
    }
    const gap = chainBreak(e, cur, position, hashKnown);
    if (gap) gaps.push(gap);
    cur = { seq: e.seq, hash: e.hash };
    hashKnown = true;
  });
  return { gaps, head: cur };
}

/**
 * Whether entry `e` (whose signature was already verified) continues the chain after `head`:
 * seq must be head.seq + 1 and prev the head's hash (unless that hash is unknown).
 */
export function chainBreak(
  e: Pick<JournalEntry, 'seq' | 'prev'>,
  head: ChainHead,
  position: number,
  hashKnown = true,
): JournalGap | undefined {
  const expectedSeq = head.seq + 1;
  if (e.seq > expectedSeq) {
    return {
      position,
      expectedSeq,
      foundSeq: e.seq,
      kind: 'missing',
      reason: `entries with seq ${expectedSeq}..${e.seq - 1} are missing before position ${position}`,
    };
  }
  if (e.seq < expectedSeq) {
    return {
      position,
      expectedSeq,
      foundSeq: e.seq,
      kind: 'reordered',
      reason: `entry ${position} has seq ${e.seq}, already seen; entries were replayed or reordered`,
    };
  }
  if (hashKnown && !e.prev.equals(head.hash)) {
    return {
      position,
      expectedSeq,
      foundSeq: e.seq,
      kind: 'altered',
      reason: `entry ${position} (seq ${e.seq}) does not chain to the entry before it: an entry was altered or replaced`,
    };
  }
  return undefined;
}

/** Check a whole journal file: parse damage becomes a gap too. */
export function checkJournalBytes(
  bytes: Uint8Array,
  publicKey: KeyObject,
): { entries: JournalEntry[]; gaps: JournalGap[]; head: ChainHead } {
  const parsed = parseJournal(bytes);
  const { gaps, head } = checkJournalChain(parsed.entries, publicKey);
  if (parsed.damage) {
    gaps.push({
      position: parsed.damage.position,
      expectedSeq: head.seq + 1,
      kind: 'damaged',
      reason: `the journal is damaged at byte ${parsed.damage.offset}: ${parsed.damage.reason}`,
    });
  }
  return { entries: parsed.entries, gaps, head };
}

/**
 * An open journal file. Appends go through one queue so concurrent callers never interleave;
 * each batch is one write() and one fsync().
 */
export class Journal {
  private queue: Promise<unknown> = Promise.resolve();
  /** Byte offset of every MARK_EVERY-th record (and the file end), so readFrom() reads only the tail. */
  private marks: Array<{ seq: number; offset: number }> = [];
  private end: number = JOURNAL_MAGIC.length;

  private constructor(
    readonly path: string,
    private readonly signer: JournalSigner,
    private head: ChainHead,
    private readonly now: () => number,
  ) {}

  private mark(entries: readonly JournalEntry[], from: number): void {
    let at = from;
    for (const e of entries) {
      if (e.seq % MARK_EVERY === 0) this.marks.push({ seq: e.seq, offset: at });
      at += 4 + e.body.length + 3 + e.signature.length;
    }
    this.end = at;
  }

  /**
   * Open (or create) the journal at `path`. An existing journal must check clean under
   * `publicKey`; otherwise this fails closed with EG_TAMPERED naming the first gap.
   */
  static async open(
    path: string,
    signer: JournalSigner,
    publicKey: KeyObject,
    opts: { now?: () => number } = {},
  ): Promise<Journal> {
    let bytes: Buffer | undefined;
    try {
      bytes = await readFile(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fsError(e, path, 'read the audit journal');
    }
    let head = GENESIS_HEAD;
    let entries: JournalEntry[] = [];
    if (bytes === undefined || bytes.length === 0) {
      const fh = await open(path, 'wx', 0o600).catch((e: unknown) => {
        throw fsError(e, path, 'create the audit journal');
      });
      try {
        await fh.write(JOURNAL_MAGIC);
        await fh.sync();
      } finally {
        await fh.close();
      }
      // Make the new file's directory entry durable too, or a power cut could lose the journal.
      const dirHandle = await open(dirname(path), 'r').catch(() => undefined);
      await dirHandle?.sync().catch(() => undefined);
      await dirHandle?.close();
    } else {
      const check = checkJournalBytes(bytes, publicKey);
      const first = check.gaps[0];
      if (first !== undefined) {
        throw new EdgeguardError(
          'EG_TAMPERED',
          `the audit journal ${path} is broken at entry ${first.position}: ${first.reason}.`,
          { details: { gaps: check.gaps } },
        );
      }
      head = check.head;
      entries = check.entries;
    }
    const journal = new Journal(path, signer, head, opts.now ?? Date.now);
    journal.mark(entries, JOURNAL_MAGIC.length);
    return journal;
  }

  get lastSeq(): number {
    return this.head.seq;
  }

  get headHash(): Buffer {
    return Buffer.from(this.head.hash);
  }

  /** Append events durably (one write + fsync); returns the new entries in order. */
  append(events: readonly AuditEvent[]): Promise<JournalEntry[]> {
    const run = this.queue.then(() => this.appendNow(events));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async appendNow(events: readonly AuditEvent[]): Promise<JournalEntry[]> {
    if (events.length === 0) return [];
    let { seq, hash } = this.head;
    const entries: JournalEntry[] = [];
    const records: Buffer[] = [];
    for (const raw of events) {
      const event = parseAuditEvent(raw);
      seq += 1;
      const timeMs = this.now();
      const body = encodeJournalBody(seq, hash, timeMs, event);
      const signature = Buffer.from(await this.signer.sign(body));
      const entry: JournalEntry = {
        seq,
        prev: hash,
        timeMs,
        event,
        alg: this.signer.alg,
        signature,
        hash: createHash('sha256').update(body).digest(),
        body,
      };
      entries.push(entry);
      records.push(encodeJournalRecord(entry));
      hash = entry.hash;
    }
    let fh;
    try {
      fh = await open(this.path, 'a');
    } catch (e) {
      throw fsError(e, this.path, 'open the audit journal');
    }
    try {
      await fh.write(Buffer.concat(records));
      await fh.sync();
    } catch (e) {
      throw fsError(e, this.path, 'append to the audit journal');
    } finally {
      await fh.close();
    }
    this.head = { seq, hash };
    this.mark(entries, this.end);
    return entries;
  }

  /**
   * Every entry from `fromSeq` on (for forwarding to the server). Only the file from the last
   * mark at or before `fromSeq` up to the end of the last complete append is read and parsed;
   * `maxBytes` bounds that read (the entries that fit; at least one record is always read).
   */
  async readFrom(fromSeq: number, maxBytes = Number.POSITIVE_INFINITY): Promise<JournalEntry[]> {
    let start = JOURNAL_MAGIC.length;
    for (const m of this.marks) {
      if (m.seq > fromSeq) break;
      start = m.offset;
    }
    const end = Math.min(this.end, start + Math.max(maxBytes, 4 + BODY_FIXED + MAX_PAYLOAD_BYTES + 3 + 512));
    let tail: Buffer;
    try {
      const fh = await open(this.path, 'r');
      try {
        tail = Buffer.alloc(Math.max(0, end - start));
        const { bytesRead } = await fh.read(tail, 0, tail.length, start);
        tail = tail.subarray(0, bytesRead);
      } finally {
        await fh.close();
      }
    } catch (e) {
      throw fsError(e, this.path, 'read the audit journal');
    }
    const parsed = parseJournal(Buffer.concat([JOURNAL_MAGIC, tail]));
    return parsed.entries.filter((e) => e.seq >= fromSeq);
  }
}
