/**
 * What a verifier learns from an event log under a policy (the log's replay at the quoted PCRs and
 * the policy's reasons) is a pure function of the log's bytes, the policy and the quoted selection.
 * A device pushes the same log on every schedule until it reboots, so the analysis is kept here,
 * keyed by the SHA-256 of the log bytes, a SHA-256 of the policy's content and the selection. The
 * quote itself (signature, nonce, clock, PCR digest against the kept replay) is checked on every
 * push by the caller (appraise.ts); a hit only skips parsing and replaying the same bytes again.
 *
 * Bounded by entries and by an estimate of the bytes held, least recently used first out; per
 * process, nothing on disk.
 */
import { createHash } from 'node:crypto';
import type { PcrValues } from '../tpm/index.ts';
import type { Reason } from './appraise.ts';
import type { BootPolicy } from './boot-policy.ts';

export interface LogAnalysis {
  /** The log's replay in the quoted banks, at the quoted PCRs (replayedPcrsFor). */
  values: PcrValues;
  /** The policy's reasons on the log (checkLogAgainstPolicy with `values`). */
  reasons: readonly Reason[];
}

export interface LogAnalysisCacheOptions {
  /** Most analyses kept (default 4096). */
  maxEntries?: number;
  /** Most bytes kept, as estimated per entry (default 32 MiB). */
  maxBytes?: number;
}

/** Per-entry bookkeeping beyond the values and strings themselves (Map entry, objects, arrays). */
const ENTRY_OVERHEAD_BYTES = 512;

export class LogAnalysisCache {
  readonly maxEntries: number;
  readonly maxBytes: number;
  private readonly entries = new Map<string, { analysis: LogAnalysis; bytes: number }>();
  private readonly policyKeys = new WeakMap<BootPolicy, string>();
  private heldBytes = 0;
  hits = 0;
  misses = 0;

  constructor(options: LogAnalysisCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? 4096;
    this.maxBytes = options.maxBytes ?? 32 * 1024 * 1024;
  }

  get size(): number {
    return this.entries.size;
  }

  get bytes(): number {
    return this.heldBytes;
  }

  /**
   * The key of (log bytes, policy content, quoted selection). The policy's part is the SHA-256 of
   * its canonical JSON, computed once per policy object, so the key never rests on a label a
   * caller chose.
   */
  keyOf(eventLog: Uint8Array, policy: BootPolicy, selection: unknown): string {
    let policyKey = this.policyKeys.get(policy);
    if (policyKey === undefined) {
      policyKey = createHash('sha256').update(JSON.stringify(policy)).digest('hex');
      this.policyKeys.set(policy, policyKey);
    }
    const logKey = createHash('sha256').update(eventLog).digest('hex');
    return `${logKey}:${policyKey}:${JSON.stringify(selection)}`;
  }

  get(key: string): LogAnalysis | undefined {
    const entry = this.entries.get(key);
    if (!entry) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    // Most recently used goes last: a Map iterates in insertion order.
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.analysis;
  }

  set(key: string, analysis: LogAnalysis): void {
    const bytes = estimateBytes(key, analysis);
    if (bytes > this.maxBytes || this.maxEntries === 0) return;
    this.delete(key);
    this.entries.set(key, { analysis, bytes });
    this.heldBytes += bytes;
    while (this.entries.size > this.maxEntries || this.heldBytes > this.maxBytes) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
    }
  }

  clear(): void {
    this.entries.clear();
    this.heldBytes = 0;
  }

  private delete(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.heldBytes -= entry.bytes;
  }
}

function estimateBytes(key: string, analysis: LogAnalysis): number {
  let bytes = ENTRY_OVERHEAD_BYTES + key.length * 2;
  for (const bank of Object.values(analysis.values))
    for (const value of Object.values(bank)) bytes += value.length + 96;
  for (const r of analysis.reasons) bytes += 64 + (r.code.length + r.detail.length) * 2;
  return bytes;
}
