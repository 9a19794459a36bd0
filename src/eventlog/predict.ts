/**
 * Predicting the PCR values of the next boot: replay a device's current (or a golden) event log
 * with the digests of the components a release replaces (kernel, initrd, command line, or any event
 * by its sequence number), per bank, with the extend rule of replay.ts. The result is only as good
 * as its two inputs: the log must be the boot the device makes today, and the release must change
 * nothing else the selected PCRs measure. A selected PCR whose new digest is not known in one of
 * its banks (e.g. `--kernel sha256:...` and a sha1 bank selected) is refused, never guessed.
 *
 * Where the components are: boot-components.ts (PCR 4 images by their Authenticode hash, PCR 9
 * files by their file hash, PCR 8 GRUB's measured text).
 */
import { createHash } from 'node:crypto';
import { EdgeguardError } from '../errors/index.ts';
import { HASH_ALGS, type PcrSelection, type PcrValues } from '../tpm/index.ts';
import { extractBootComponents, GRUB_COMMAND_PCR, IMAGE_PCR, type BootComponent } from './boot-components.ts';
import { EV } from './event-types.ts';
import type { EventDigest, EventLog, LogEvent } from './parse.ts';
import { replayEventLog, replayedPcrsFor } from './replay.ts';

/** Bank name (sha1, sha256, ...) -> the new digest in that bank. */
export type BankDigests = Record<string, Buffer>;

export interface BootChanges {
  /** The new kernel's file digest (PCR 9), and its image digest (PCR 4) unless `kernelImage` is given. */
  kernel?: BankDigests;
  /** The new kernel's Authenticode image digest, for PCR 4 only. */
  kernelImage?: BankDigests;
  initrd?: BankDigests;
  /** The new kernel command line, as GRUB measures it (the text after "kernel_cmdline: "). */
  cmdline?: string;
  /** Any event, by its sequence number in the log: new digests, or new measured text (PCR 8). */
  events?: Array<{ sequence: number; digests?: BankDigests; text?: string }>;
}

export interface ReplacedEvent {
  sequence: number;
  pcr: number;
  what: string;
  /** Bank name -> hex, before and after. */
  before: Record<string, string>;
  after: Record<string, string>;
}

export interface PcrPrediction {
  selection: PcrSelection;
  values: PcrValues;
  replaced: ReplacedEvent[];
  /** Selected PCRs whose predicted value differs from the log's, as bank:index. */
  changed: string[];
  /** What the operator should know about how far the prediction goes. */
  notes: string[];
}

interface Replacement {
  what: string;
  digests?: BankDigests;
  text?: string;
}

function usage(message: string): EdgeguardError {
  return new EdgeguardError('EG_USAGE', message);
}

/** GRUB's PCR 8 strings: "PREFIX: TEXT\0", only TEXT measured (boot-components.ts). */
function grubPrefix(event: LogEvent): string | undefined {
  if (event.pcr !== GRUB_COMMAND_PCR) return undefined;
  const text = event.data.toString('latin1');
  const colon = text.indexOf(': ');
  return colon < 0 ? undefined : text.slice(0, colon + 2);
}

function componentReplacements(log: EventLog, c: BootChanges): Map<number, Replacement> {
  const out = new Map<number, Replacement>();
  const { components } = extractBootComponents(log);
  const place = (kind: BootComponent['kind'], flag: string, r: (x: BootComponent) => Replacement | undefined) => {
    const found = components.filter((x) => x.kind === kind);
    if (found.length === 0)
      throw usage(`${flag}: the log measures no ${kind}; name the event with --replace SEQ=ALG:HEX instead.`);
    for (const x of found) {
      const replacement = r(x);
      if (replacement) out.set(x.sequence, replacement);
    }
  };
  if (c.kernel || c.kernelImage)
    place('kernel', c.kernel ? '--kernel' : '--kernel-image', (x) => {
      const digests = x.pcr === IMAGE_PCR ? (c.kernelImage ?? c.kernel) : c.kernel;
      return digests ? { what: `kernel (PCR ${x.pcr})`, digests } : undefined;
    });
  if (c.initrd) place('initrd', '--initrd', () => ({ what: 'initrd', digests: c.initrd! }));
  if (c.cmdline !== undefined) place('cmdline', '--cmdline', () => ({ what: 'command line', text: c.cmdline! }));
  for (const e of c.events ?? []) {
    if (out.has(e.sequence)) throw usage(`event ${e.sequence} is replaced twice.`);
    out.set(e.sequence, { what: `event ${e.sequence}`, ...e });
  }
  return out;
}

/** The event with its new digests in every bank that can be known; unknown banks are reported. */
function replaceEvent(event: LogEvent, r: Replacement): { event: LogEvent; unknown: string[] } {
  if (event.type === EV.NO_ACTION) throw usage(`event ${event.sequence} is not measured (EV_NO_ACTION).`);
  let data = event.data;
  let measured: Buffer | undefined;
  if (r.text !== undefined) {
    const prefix = grubPrefix(event);
    if (prefix === undefined)
      throw usage(`event ${event.sequence} is not a GRUB string on PCR 8; replace its digests instead of its text.`);
    measured = Buffer.from(r.text, 'latin1');
    data = Buffer.from(`${prefix}${r.text}\0`, 'latin1');
  }
  const unknown: string[] = [];
  const digests: EventDigest[] = event.digests.map((d) => {
    const hash = HASH_ALGS[d.alg];
    if (!hash) return d;
    if (measured) return { alg: d.alg, digest: createHash(hash.node).update(measured).digest() };
    const given = r.digests?.[hash.name];
    if (!given) {
      unknown.push(hash.name);
      return d;
    }
    if (given.length !== hash.size)
      throw usage(`the ${hash.name} digest for ${r.what} is ${given.length} bytes; ${hash.name} is ${hash.size}.`);
    return { alg: d.alg, digest: given };
  });
  for (const bank of Object.keys(r.digests ?? {}))
    if (!event.digests.some((d) => HASH_ALGS[d.alg]?.name === bank))
      throw usage(`the log has no ${bank} bank for ${r.what}.`);
  return { event: { ...event, data, digests }, unknown };
}

const hexByBank = (digests: EventDigest[]) =>
  Object.fromEntries(
    digests.filter((d) => HASH_ALGS[d.alg]).map((d) => [HASH_ALGS[d.alg]!.name, d.digest.toString('hex')]),
  );

/** The values `selection` will hold after booting what `log` records with `changes` applied. */
export function predictPcrs(log: EventLog, selection: PcrSelection, changes: BootChanges): PcrPrediction {
  const replacements = componentReplacements(log, changes);
  const selected = (bank: string, pcr: number) =>
    selection.some((b) => HASH_ALGS[b.hashAlg]?.name === bank && b.pcrs.includes(pcr));
  const replaced: ReplacedEvent[] = [];
  const events = log.events.map((event) => {
    const r = replacements.get(event.sequence);
    if (!r) return event;
    replacements.delete(event.sequence);
    const next = replaceEvent(event, r);
    const blind = next.unknown.filter((bank) => selected(bank, event.pcr));
    if (blind.length > 0)
      throw usage(
        `${r.what} is measured into ${blind.map((b) => `${b}:${event.pcr}`).join(', ')} but no ${blind.join('/')} digest was given; give one or leave that bank out of --pcrs.`,
      );
    replaced.push({
      sequence: event.sequence,
      pcr: event.pcr,
      what: r.what,
      before: hexByBank(event.digests),
      after: hexByBank(next.event.digests),
    });
    return next.event;
  });
  const missing = [...replacements.keys()];
  if (missing.length > 0) throw usage(`the log has no event ${missing.join(', ')}.`);
  const before = replayedPcrsFor(replayEventLog(log), selection);
  const values = replayedPcrsFor(replayEventLog({ ...log, events }), selection);
  for (const b of selection) {
    const bank = HASH_ALGS[b.hashAlg]?.name;
    if (!bank || !values[bank]) throw usage(`the log has no ${bank ?? `0x${b.hashAlg.toString(16)}`} bank to predict.`);
  }
  const changed = Object.entries(values).flatMap(([bank, v]) =>
    Object.entries(v)
      .filter(([i, value]) => !value.equals(before[bank]![Number(i)]!))
      .map(([i]) => `${bank}:${i}`),
  );
  return { selection, values, replaced, changed, notes: notesFor(log, changes, replaced) };
}

function notesFor(log: EventLog, c: BootChanges, replaced: ReplacedEvent[]): string[] {
  const notes = extractBootComponents(log).findings.map(
    (f) => `the log's event ${f.sequence ?? '-'} (PCR ${f.pcr}): ${f.detail}; component positions may be wrong`,
  );
  if (c.kernel && !c.kernelImage && replaced.some((r) => r.pcr === IMAGE_PCR))
    notes.push(
      "PCR 4 measures the kernel's Authenticode image hash, which differs from its file hash on real kernels; pass --kernel-image unless both are the same digest",
    );
  if (c.cmdline !== undefined)
    notes.push(
      'GRUB also measures the `linux` command that loads the kernel; if it changes, replace it with --replace-text',
    );
  notes.push('PCRs extended after boot (IMA, the tamper PCR) are predicted at their boot value');
  return notes;
}

export const PCR_PREDICTION_TYPE = 'edgeguard-pcr-prediction';

/**
 * The values file (docs/formats.md): `attest authorize-pcrs --values` reads its `pcrValues`; the
 * rest records what the prediction was made from, for the operator who signs it.
 */
export interface PcrPredictionFile {
  type: typeof PCR_PREDICTION_TYPE;
  version: 1;
  pcrs: string;
  pcrValues: Record<string, Record<string, string>>;
  log: { sha256: string };
  replaced: ReplacedEvent[];
  changed: string[];
  notes: string[];
}

export function predictionFile(p: PcrPrediction, pcrs: string, logBytes: Uint8Array): PcrPredictionFile {
  const pcrValues = Object.fromEntries(
    Object.entries(p.values).map(([bank, v]) => [
      bank,
      Object.fromEntries(Object.entries(v).map(([i, value]) => [i, value.toString('hex')])),
    ]),
  );
  return {
    type: PCR_PREDICTION_TYPE,
    version: 1,
    pcrs,
    pcrValues,
    log: { sha256: createHash('sha256').update(logBytes).digest('hex') },
    replaced: p.replaced,
    changed: p.changed,
    notes: p.notes,
  };
}
