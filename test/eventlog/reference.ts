/**
 * tpm2_eventlog (tpm2-tools) as an independent reference parser: its YAML, read back into events
 * and replayed PCRs. Two quirks of tpm2-tools 5.x are handled here, not hidden: for a SHA-1 log it
 * prints the events without list markers (one mapping per event, keys repeated), and on
 * option_rom_eventlog it crashes after printing every event but before the PCRs.
 */
import { spawnSync } from 'node:child_process';
import { parse } from 'yaml';

export interface ReferenceEvent {
  pcr: number;
  type: string;
  size: number;
  /** Bank name -> hex digest. */
  digests: Record<string, string>;
  /** The decoded event as printed (UnicodeName, VariableData, ... for variables), when it is a mapping. */
  event?: Record<string, unknown>;
}

export interface ReferenceLog {
  exitStatus: number | null;
  events: ReferenceEvent[];
  /** Bank -> PCR -> hex, or undefined when tpm2_eventlog did not get as far as printing them. */
  pcrs: Record<string, Record<number, string>> | undefined;
  stderr: string;
}

type YamlEvent = Record<string, unknown> & {
  PCRIndex: string;
  EventType: string;
  EventSize: string;
  Digest?: string;
  Digests?: Array<{ AlgorithmId: string; Digest: string }>;
};

export function tpm2EventlogAvailable(): boolean {
  return spawnSync('tpm2_eventlog', ['--help'], { encoding: 'utf8' }).error === undefined;
}

export function runTpm2Eventlog(path: string): ReferenceLog {
  const run = spawnSync('tpm2_eventlog', [path], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  let text = run.stdout;
  // The SHA-1 printer omits "- EventNum:"; each event starts at a two-space "PCRIndex:" instead.
  if (!text.includes('- EventNum:')) text = text.replace(/^ {2}PCRIndex:/gm, '- PCRIndex:');
  // The failsafe schema keeps every scalar a string: PCR values are 0x... numbers far beyond 2^53.
  const doc = (parse(text, { schema: 'failsafe' }) ?? {}) as {
    events?: YamlEvent[];
    pcrs?: Record<string, Record<string, string>>;
  };
  const events = Array.isArray(doc.events) ? doc.events.map(toReferenceEvent) : [];
  const pcrs = doc.pcrs ? mapPcrs(doc.pcrs) : undefined;
  return { exitStatus: run.status, events, pcrs, stderr: run.stderr };
}

function toReferenceEvent(e: YamlEvent): ReferenceEvent {
  const digests: Record<string, string> = {};
  if (e.Digests) for (const d of e.Digests) digests[d.AlgorithmId] = d.Digest;
  else if (e.Digest !== undefined) digests.sha1 = e.Digest;
  const event = typeof e.Event === 'object' && e.Event !== null ? (e.Event as Record<string, unknown>) : undefined;
  return { pcr: Number(e.PCRIndex), type: e.EventType, size: Number(e.EventSize), digests, event };
}

function mapPcrs(pcrs: Record<string, Record<string, string>>): Record<string, Record<number, string>> {
  const out: Record<string, Record<number, string>> = {};
  for (const [bank, values] of Object.entries(pcrs)) {
    out[bank] = {};
    for (const [index, value] of Object.entries(values)) out[bank][Number(index.trim())] = value.replace(/^0x/, '');
  }
  return out;
}
