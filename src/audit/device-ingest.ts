/**
 * Ingestion of device journals: records a device forwarded (oldest first) are verified under the
 * device's key, checked against the chain the log already holds for that device, and appended.
 * Entries already logged are recognised as duplicates, a break is logged as an audit.journal_gap
 * event before the entry that shows it, and a rewritten already-logged entry is logged as a gap and
 * not appended. All of it happens in one transaction under the sequencer lock.
 */
import type { KeyObject } from 'node:crypto';
import { EdgeguardError } from '../errors/index.ts';
import { encodeLogLeaf, mayRecord, type LogLeaf } from './events.ts';
import {
  chainBreak,
  decodeJournalRecord,
  verifyJournalSignature,
  GENESIS_HEAD,
  type ChainHead,
  type JournalEntry,
  type JournalGap,
} from './journal.ts';
import { checkLeafSize } from './leaf.ts';
import type { AuditWriteTx } from './storage.ts';
import type { AppendLeaves, TreeWriter } from './tree-writer.ts';

export interface DeviceAppendResult {
  /**
   * Every entry received, in order: its log index ('logged'), the index it was logged at before
   * ('duplicate'), or null when it conflicts with what was logged for its seq ('conflict').
   */
  entries: Array<{ seq: number; index: number | null; status: 'logged' | 'duplicate' | 'conflict' }>;
  /** Breaks of the device's chain found in this batch, each also logged as audit.journal_gap. */
  gaps: JournalGap[];
}

interface Planned {
  seq: number;
  entry: JournalEntry;
  /** Position of its leaf among this batch's leaves, when it is appended. */
  leafAt?: number;
  /** The index it was logged at earlier, when it is a duplicate. */
  duplicateOf?: number;
}

/** Decode and verify every record first: one bad record and nothing of the batch is logged. */
export function verifyDeviceRecords(
  deviceId: string,
  publicKey: KeyObject,
  records: readonly Uint8Array[],
): JournalEntry[] {
  const entries = records.map((r, i) => {
    try {
      return decodeJournalRecord(r);
    } catch (e) {
      throw new EdgeguardError(
        'EG_FORMAT',
        `journal record ${i} from device ${deviceId} is malformed: ${(e as Error).message}`,
        { cause: e },
      );
    }
  });
  entries.forEach((e, i) => {
    if (!verifyJournalSignature(e.alg, e.body, e.signature, publicKey)) {
      throw new EdgeguardError(
        'EG_SIGNATURE_INVALID',
        `journal record ${i} (seq ${e.seq}) from device ${deviceId} is not signed by the device's key; nothing from this batch was logged.`,
      );
    }
  });
  entries.forEach((e, i) => {
    if (!mayRecord(e.event.type, 'device'))
      throw new EdgeguardError(
        'EG_FORBIDDEN',
        `journal record ${i} (seq ${e.seq}) from device ${deviceId} is a ${e.event.type} event, which only the control plane records; nothing from this batch was logged. A device that journals it is not running edgeguard's agent: inspect it.`,
        { details: { reason: 'event_type_authority', seq: e.seq, type: e.event.type } },
      );
  });
  return entries;
}

export class DeviceIngest {
  constructor(
    private readonly writer: TreeWriter,
    private readonly origin: string,
    private readonly now: () => Date,
  ) {}

  async append(deviceId: string, publicKey: KeyObject, records: readonly Uint8Array[]): Promise<DeviceAppendResult> {
    const entries = verifyDeviceRecords(deviceId, publicKey, records);
    return this.writer.write((tx, append) => this.ingest(tx, append, deviceId, entries));
  }

  private async ingest(
    tx: AuditWriteTx,
    append: AppendLeaves,
    deviceId: string,
    entries: readonly JournalEntry[],
  ): Promise<DeviceAppendResult> {
    const stored = await tx.deviceHead(deviceId);
    let head: ChainHead = stored ? { seq: stored.seq, hash: Buffer.from(stored.hash, 'hex') } : GENESIS_HEAD;
    const loggedAt = this.now().toISOString();
    const leaves: Buffer[] = [];
    const plan: Planned[] = [];
    const gaps: JournalGap[] = [];
    const logGap = (g: JournalGap) => {
      gaps.push(g);
      leaves.push(checkLeafSize(encodeLogLeaf(this.gapLeaf(deviceId, g, loggedAt))));
    };
    for (const [position, e] of entries.entries()) {
      if (e.seq <= head.seq) {
        const prior = await tx.deviceEntry(deviceId, e.seq);
        if (prior !== undefined && prior.hash === e.hash.toString('hex')) {
          plan.push({ seq: e.seq, duplicateOf: prior.idx, entry: e });
          continue;
        }
        logGap({
          position,
          expectedSeq: head.seq + 1,
          foundSeq: e.seq,
          kind: 'altered',
          reason: `device ${deviceId} sent seq ${e.seq} again with different contents: its journal was rewritten after it was logged`,
        });
        plan.push({ seq: e.seq, entry: e });
        continue;
      }
      // Signatures were verified before the transaction; here only the chain.
      const g = chainBreak(e, head, position);
      if (g !== undefined) logGap(g);
      plan.push({ seq: e.seq, leafAt: leaves.length, entry: e });
      leaves.push(checkLeafSize(encodeLogLeaf(deviceLeaf(deviceId, e, loggedAt))));
      head = { seq: e.seq, hash: e.hash };
    }
    const first = leaves.length > 0 ? await append(leaves) : 0;
    await this.recordDeviceEntries(tx, deviceId, plan, first, head, loggedAt);
    return { entries: plan.map((p) => outcomeOf(p, first)), gaps };
  }

  private async recordDeviceEntries(
    tx: AuditWriteTx,
    deviceId: string,
    plan: readonly Planned[],
    first: number,
    head: ChainHead,
    loggedAt: string,
  ): Promise<void> {
    const rows = plan
      .filter((p) => p.leafAt !== undefined)
      .map((p) => ({
        device_id: deviceId,
        seq: p.seq,
        idx: first + (p.leafAt as number),
        hash: p.entry.hash.toString('hex'),
      }));
    if (rows.length === 0) return;
    await tx.insertDeviceEntries(rows);
    await tx.setDeviceHead(deviceId, { seq: head.seq, hash: head.hash.toString('hex') }, loggedAt);
  }

  private gapLeaf(deviceId: string, g: JournalGap, loggedAt: string): LogLeaf {
    return {
      v: 1,
      event: {
        type: 'audit.journal_gap',
        time: loggedAt,
        actor: { kind: 'server', id: this.origin },
        subject: deviceId,
        outcome: 'failure',
        details: {
          deviceId,
          position: g.position,
          expectedSeq: g.expectedSeq,
          ...(g.foundSeq !== undefined ? { foundSeq: g.foundSeq } : {}),
          reason: g.reason.slice(0, 2000),
        },
      },
      origin: { kind: 'server' },
      loggedAt,
    };
  }
}

function outcomeOf(p: Planned, first: number): DeviceAppendResult['entries'][number] {
  if (p.leafAt !== undefined) return { seq: p.seq, index: first + p.leafAt, status: 'logged' };
  if (p.duplicateOf !== undefined) return { seq: p.seq, index: p.duplicateOf, status: 'duplicate' };
  return { seq: p.seq, index: null, status: 'conflict' };
}

export function deviceLeaf(deviceId: string, e: JournalEntry, loggedAt: string): LogLeaf {
  return {
    v: 1,
    event: e.event,
    origin: {
      kind: 'device',
      device: {
        deviceId,
        seq: e.seq,
        prev: e.prev.toString('hex'),
        timeMs: e.timeMs,
        alg: e.alg,
        sig: e.signature.toString('base64'),
      },
    },
    loggedAt,
  };
}
