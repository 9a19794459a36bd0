/**
 * The anti-rollback floor: the lowest release version a device accepts, per release kind, that
 * only grows. The installer refuses a release below it and raises it to the release's minVersion
 * after the switch (docs/threat-model.md, "Rollback"; byte layout: docs/formats.md).
 *
 *   TPM devices: floor(K) = c_K - b_K. c_K is an NV counter per kind (TPM_NT_COUNTER: only grows;
 *     undefined and defined again it starts at the largest value any counter of this TPM ever
 *     held, so it cannot be reset by re-creation). b_K is a baseline fixed when the floor is
 *     provisioned, kept in ONE ordinary NV index B (base + 3) that only a session satisfying the
 *     binding key's authPolicy can write (POLICYWRITE, authPolicy = the binding key's), locked
 *     after the write (WRITEDEFINE + TPM2_NV_WriteLock: until B is undefined). Raw counters alone
 *     were wrong: a TPM starts every counter at its first increment at the high-water mark of all
 *     counters, so a model floor of 5 made the first agent and firmware floors 5 as well.
 *     Each read checks B's Name against the one our template gives (nameAlg, attributes incl.
 *     WRITTEN|WRITELOCKED, the binding key's authPolicy, size): a B re-created with another
 *     policy (to write larger baselines, i.e. lower floors) has another Name. NV_ReadPublic is
 *     sent raw, but B and each counter are then read under an SRK-salted HMAC session bound to
 *     the Name just checked (nv-client.ts): an active interposer on the TPM bus can neither change
 *     the values read nor answer NV_ReadPublic for an index the TPM holds under another Name. A missing or
 *     re-created counter, an unwritten or foreign B: EG_FLOOR_TAMPERED; no B: EG_FLOOR_UNPROVISIONED.
 *     Both refuse updates. Only `edgeguard device init` and `edgeguard device floor init`
 *     provision (provisionTpmFloor); the agent and the installer never do.
 *   Software key stores: a file (anti-rollback.json), labelled as such: anyone who can write the
 *     device's data directory can lower it.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { EdgeguardError, fsError } from '../errors/index.ts';
import {
  TPMA_NV,
  TPM_ALG,
  TPM_NT,
  hasNvAttributes,
  marshalNvPublic,
  nvName,
  nvType,
  parseTpm2bPublic,
  type KeyPolicy,
  type NvAuth,
  type NvPublic,
  type TpmClient,
  type TpmKeyBlobs,
} from '../tpm/index.ts';
import { replaceFileDurablySync } from './durable-file.ts';
import { RELEASE_KINDS, type ReleaseKind } from './release-target.ts';

export const SOFTWARE_FLOOR_LABEL = 'software floor: a file, not hardware-protected';
export const TPM_FLOOR_LABEL = 'TPM NV counters and baselines: only grows';
/** Default first NV index (owner range): counters at BASE, BASE+1, BASE+2 in RELEASE_KINDS order, baselines at BASE+3. */
export const DEFAULT_FLOOR_NV_INDEX = 0x01800100;
/** The baselines index B is BASE + this. */
export const FLOOR_BASELINES_OFFSET = 3;
/** B's contents: this magic, then one u64 big-endian unsigned baseline per kind in RELEASE_KINDS order. */
export const FLOOR_BASELINES_MAGIC = Buffer.from('EGFLOOR1', 'ascii');
export const FLOOR_BASELINES_SIZE = FLOOR_BASELINES_MAGIC.length + 8 * RELEASE_KINDS.length;
/** B's attributes at definition (tpm2-tools syntax). */
export const FLOOR_BASELINES_DEFINE_ATTRIBUTES = 'policywrite|writedefine|ownerread|authread|no_da';
/** B's attributes once written and locked: what its Name is checked with. */
export const FLOOR_BASELINES_ATTRIBUTES =
  (TPMA_NV.policywrite |
    TPMA_NV.writedefine |
    TPMA_NV.ownerread |
    TPMA_NV.authread |
    TPMA_NV.noDa |
    TPMA_NV.written |
    TPMA_NV.writelocked) >>>
  0;
/** The most increments one raise may take: versions are small integers, and NV writes wear. */
export const MAX_FLOOR_STEP = 4096;
export const SOFTWARE_FLOOR_FILE = 'anti-rollback.json';

export interface AntiRollbackFloor {
  readonly provider: 'tpm' | 'software';
  readonly label: string;
  read(kind: ReleaseKind): Promise<number>;
  /** Raise the floor of `kind` to at least `to` (never lowers it); returns the floor now. */
  raise(kind: ReleaseKind, to: number): Promise<number>;
}

const fileSchema = z.strictObject({
  type: z.literal('edgeguard-anti-rollback'),
  version: z.literal(1),
  label: z.literal(SOFTWARE_FLOOR_LABEL),
  floors: z.partialRecord(z.enum(RELEASE_KINDS), z.number().int().min(0)),
});

export class SoftwareFloor implements AntiRollbackFloor {
  readonly provider = 'software' as const;
  readonly label = SOFTWARE_FLOOR_LABEL;
  readonly path: string;

  constructor(dataDir: string) {
    this.path = join(dataDir, SOFTWARE_FLOOR_FILE);
  }

  private async floors(): Promise<Partial<Record<ReleaseKind, number>>> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw fsError(e, this.path, 'read the anti-rollback floor');
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const r = fileSchema.safeParse(json);
    // Replaced only whole, so a damaged file was edited: fail closed.
    if (!r.success)
      throw new EdgeguardError(
        'EG_TAMPERED',
        `${this.path} is not an anti-rollback floor file; it was altered. Restore it, or re-provision the device.`,
      );
    return r.data.floors;
  }

  async read(kind: ReleaseKind): Promise<number> {
    return (await this.floors())[kind] ?? 0;
  }

  async raise(kind: ReleaseKind, to: number): Promise<number> {
    const floors = await this.floors();
    const now = Math.max(floors[kind] ?? 0, to);
    if (now !== floors[kind]) {
      const file = {
        type: 'edgeguard-anti-rollback',
        version: 1,
        label: SOFTWARE_FLOOR_LABEL,
        floors: { ...floors, [kind]: now },
      };
      replaceFileDurablySync(this.path, JSON.stringify(file, null, 2) + '\n');
    }
    return now;
  }
}

/** The raise in progress per NV index, in this process. */
const RAISING = new Map<number, Promise<void>>();

/** What a TPM floor needs of the device key store (TpmKeyStore): its TPM, the binding key, and its session. */
export interface FloorBindingKey {
  readonly client: TpmClient;
  /** The binding key blobs: B's authPolicy is its public area's. */
  readonly binding: TpmKeyBlobs;
  /** The session the binding key is used with now; B is written with the same. */
  keyPolicy(): Promise<KeyPolicy>;
}

export interface TpmFloorKind {
  kind: ReleaseKind;
  counterIndex: number;
  counter: bigint;
  baseline: bigint;
  floor: number;
}

export interface TpmFloorState {
  baseIndex: number;
  baselinesIndex: number;
  kinds: Record<ReleaseKind, TpmFloorKind>;
}

export interface ProvisionTpmFloorResult {
  state: TpmFloorState;
  /** An existing B was undefined and every floor set to 0 (`--force`). */
  reset: boolean;
  /** Kinds whose counter already held a value: their old floor (the raw counter) is kept. */
  kept: ReleaseKind[];
}

/** A base NV index from the command line: hex (0x...) or decimal, in the owner range with room for B. */
export function parseFloorNvIndex(text: string): number {
  const n = /^0x[0-9a-f]{1,8}$/i.test(text) ? parseInt(text, 16) : /^\d{1,10}$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n) || n < 0x01000000 || n + FLOOR_BASELINES_OFFSET > 0x01bfffff)
    throw new EdgeguardError(
      'EG_USAGE',
      `--nv-index ${text} is not an NV index from 0x01000000 to 0x01bffffc (the floor uses it and the three after it).`,
    );
  return n;
}

function hexIndex(index: number): string {
  return `0x${index.toString(16).padStart(8, '0')}`;
}

/** B's contents: magic || u64 BE baseline per kind (RELEASE_KINDS order). */
export function encodeFloorBaselines(baselines: Record<ReleaseKind, bigint>): Buffer {
  const out = Buffer.alloc(FLOOR_BASELINES_SIZE);
  FLOOR_BASELINES_MAGIC.copy(out, 0);
  RELEASE_KINDS.forEach((k, i) => out.writeBigUInt64BE(baselines[k], FLOOR_BASELINES_MAGIC.length + 8 * i));
  return out;
}

/** Parse B's contents; anything but exactly our layout is a floor that cannot be trusted. */
export function parseFloorBaselines(bytes: Uint8Array, index = DEFAULT_FLOOR_NV_INDEX + FLOOR_BASELINES_OFFSET) {
  const b = Buffer.from(bytes);
  if (b.length !== FLOOR_BASELINES_SIZE || !b.subarray(0, FLOOR_BASELINES_MAGIC.length).equals(FLOOR_BASELINES_MAGIC))
    throw new EdgeguardError(
      'EG_FLOOR_TAMPERED',
      `NV index ${hexIndex(index)} does not hold anti-rollback baselines (${b.length} bytes, expected ${FLOOR_BASELINES_SIZE} starting "${FLOOR_BASELINES_MAGIC.toString('ascii')}"); updates are refused. Check the device, then re-provision with \`edgeguard device floor init --force\`.`,
    );
  return Object.fromEntries(
    RELEASE_KINDS.map((k, i) => [k, b.readBigUInt64BE(FLOOR_BASELINES_MAGIC.length + 8 * i)]),
  ) as Record<ReleaseKind, bigint>;
}

/** The Name B has when defined from our template with `authPolicy`, written and locked. */
export function expectedBaselinesName(index: number, authPolicy: Uint8Array): Buffer {
  const pub = {
    nvIndex: index,
    nameAlg: TPM_ALG.SHA256,
    attributes: FLOOR_BASELINES_ATTRIBUTES,
    authPolicy: Buffer.from(authPolicy),
    dataSize: FLOOR_BASELINES_SIZE,
  };
  return nvName({ nameAlg: pub.nameAlg, bytes: marshalNvPublic(pub) });
}

function tampered(sentence: string): EdgeguardError {
  return new EdgeguardError(
    'EG_FLOOR_TAMPERED',
    `${sentence} Updates are refused. Check the device for tampering; then an operator re-provisions the floor with \`edgeguard device floor init --dir <device dir> --force\` (every floor restarts at 0).`,
  );
}

function toVersion(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

/** Read with the index's own authValue when the counter allows it (counters made by nv.counterDefine). */
function counterAuth(pub: NvPublic): NvAuth {
  return hasNvAttributes(pub.attributes, TPMA_NV.authread | TPMA_NV.authwrite) ? 'index' : 'owner';
}

export class TpmFloor implements AntiRollbackFloor {
  readonly provider = 'tpm' as const;
  readonly label = TPM_FLOOR_LABEL;
  private readonly client: TpmClient;

  constructor(
    private readonly key: FloorBindingKey,
    readonly baseIndex = DEFAULT_FLOOR_NV_INDEX,
  ) {
    this.client = key.client;
  }

  indexOf(kind: ReleaseKind): number {
    return this.baseIndex + RELEASE_KINDS.indexOf(kind);
  }

  get baselinesIndex(): number {
    return this.baseIndex + FLOOR_BASELINES_OFFSET;
  }

  private authPolicy(): Buffer {
    return parseTpm2bPublic(this.key.binding.public).authPolicy;
  }

  /** B checked (defined, written, locked, our Name), then its baselines. */
  private async baselines(): Promise<Record<ReleaseKind, bigint>> {
    const index = this.baselinesIndex;
    const pub = await this.client.nv.readPublic(index);
    if (!pub)
      throw new EdgeguardError(
        'EG_FLOOR_UNPROVISIONED',
        `the anti-rollback floor on this TPM is not provisioned (NV index ${hexIndex(index)} holds no baselines), so updates are refused. Run \`edgeguard device floor init --dir <device dir>\` once (devices made before floor baselines); if this device had a provisioned floor, the index was removed: check the device for tampering first.`,
      );
    if (!hasNvAttributes(pub.attributes, TPMA_NV.written))
      throw new EdgeguardError(
        'EG_FLOOR_TAMPERED',
        `NV index ${hexIndex(index)} (anti-rollback baselines) is defined but was never written: provisioning stopped half-way, or the index was re-created. Updates are refused; run \`edgeguard device floor init --dir <device dir>\`.`,
      );
    if (!nvName(pub).equals(expectedBaselinesName(index, this.authPolicy())))
      throw tampered(
        `NV index ${hexIndex(index)} is not the anti-rollback baselines index provisioned for this device's binding key (its Name differs: it was re-created with other attributes, policy or size, or the binding key changed since the floor was provisioned).`,
      );
    // Bound to the Name just checked (nv-client.ts): a raw NV_ReadPublic answered with our
    // template's area does not cover a B that the TPM holds under another Name.
    return parseFloorBaselines(await this.client.nv.read(index, FLOOR_BASELINES_SIZE, nvName(pub)), index);
  }

  /** Counter K checked (defined, a written 8-byte counter) and its value. */
  private async counter(kind: ReleaseKind): Promise<{ value: bigint; auth: NvAuth }> {
    const index = this.indexOf(kind);
    const pub = await this.client.nv.readPublic(index);
    if (!pub) throw tampered(`the ${kind} floor's NV counter ${hexIndex(index)} was removed.`);
    if (nvType(pub.attributes) !== TPM_NT.counter || pub.dataSize !== 8)
      throw tampered(`NV index ${hexIndex(index)} (the ${kind} floor) is no longer an 8-byte counter.`);
    if (!hasNvAttributes(pub.attributes, TPMA_NV.written))
      throw tampered(
        `the ${kind} floor's NV counter ${hexIndex(index)} was re-created after the floor was provisioned.`,
      );
    const auth = counterAuth(pub);
    const value = await this.client.nv.counterRead(index, auth, nvName(pub));
    if (value === undefined) throw tampered(`the ${kind} floor's NV counter ${hexIndex(index)} was removed.`);
    return { value, auth };
  }

  private async kindState(kind: ReleaseKind, baselines?: Record<ReleaseKind, bigint>) {
    const b = (baselines ?? (await this.baselines()))[kind];
    const c = await this.counter(kind);
    if (c.value < b)
      throw tampered(
        `the ${kind} floor's NV counter ${hexIndex(this.indexOf(kind))} (${c.value}) is below its baseline (${b}).`,
      );
    return {
      kind,
      counterIndex: this.indexOf(kind),
      counter: c.value,
      baseline: b,
      floor: toVersion(c.value - b),
      auth: c.auth,
    };
  }

  /** Every kind's counter, baseline and floor (fails closed like read). */
  async state(): Promise<TpmFloorState> {
    const baselines = await this.baselines();
    const kinds = {} as Record<ReleaseKind, TpmFloorKind>;
    for (const k of RELEASE_KINDS) {
      const { auth: _auth, ...s } = await this.kindState(k, baselines);
      kinds[k] = s;
    }
    return { baseIndex: this.baseIndex, baselinesIndex: this.baselinesIndex, kinds };
  }

  async read(kind: ReleaseKind): Promise<number> {
    return (await this.kindState(kind)).floor;
  }

  /**
   * Read-then-increment is not atomic on the TPM: two raises at once (the installer's commit and a
   * serving agent's start-up recovery after the switch) would both increment and overshoot the
   * floor past the installed version. Raises of one index are serialized within the process.
   */
  raise(kind: ReleaseKind, to: number): Promise<number> {
    const index = this.indexOf(kind);
    const run = (RAISING.get(index) ?? Promise.resolve()).then(() => this.raiseNow(kind, to));
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    RAISING.set(index, settled);
    void settled.then(() => {
      if (RAISING.get(index) === settled) RAISING.delete(index);
    });
    return run;
  }

  private async raiseNow(kind: ReleaseKind, to: number): Promise<number> {
    const s = await this.kindState(kind);
    if (to - s.floor > MAX_FLOOR_STEP)
      throw new EdgeguardError(
        'EG_USAGE',
        `raising the ${kind} floor from ${s.floor} to ${to} takes more than ${MAX_FLOOR_STEP} TPM counter increments; use small consecutive release versions.`,
      );
    let value = s.counter;
    // Each increment must show in the counter read back (in its HMAC session): one that does not was
    // not done by the TPM (an interposer answering for it), and trying again would never end.
    while (toVersion(value - s.baseline) < to) {
      const next = await this.client.nv.counterIncrement(s.counterIndex, s.auth);
      if (next <= value)
        throw tampered(
          `the ${kind} floor's NV counter ${hexIndex(s.counterIndex)} did not grow when incremented (${value} before, ${next} after): the TPM did not do the increment it answered for, so something between this process and the TPM answers in its place.`,
        );
      value = next;
    }
    return toVersion(value - s.baseline);
  }

  /**
   * Move a provisioned floor to this binding key (`edgeguard device reprovision` made a new one):
   * B is read and checked as `previous`'s (its Name with the old key's authPolicy), then defined
   * again with this key's authPolicy and the same baselines, so every floor stays exactly where it
   * was. A floor that does not check out under `previous` is not moved (its EG_FLOOR_* error).
   */
  async transferFrom(previous: FloorBindingKey): Promise<TpmFloorState> {
    const before = await new TpmFloor(previous, this.baseIndex).state();
    const baselines = Object.fromEntries(RELEASE_KINDS.map((k) => [k, before.kinds[k].baseline])) as Record<
      ReleaseKind,
      bigint
    >;
    const policy = await this.key.keyPolicy();
    await this.client.nv.undefine(this.baselinesIndex);
    await this.writeBaselines(baselines, policy);
    return this.state();
  }

  private async writeBaselines(baselines: Record<ReleaseKind, bigint>, policy: KeyPolicy): Promise<void> {
    const index = this.baselinesIndex;
    await this.client.nv.define(index, FLOOR_BASELINES_SIZE, FLOOR_BASELINES_DEFINE_ATTRIBUTES, this.authPolicy());
    await this.client.nv.writeLocked(index, encodeFloorBaselines(baselines), policy);
  }

  /**
   * Provision the floor (`edgeguard device init`, `edgeguard device floor init`): counters that do
   * not exist are defined, each counter without a value is incremented once, and B is defined with
   * the binding key's authPolicy, written and locked with the binding key's session. A counter
   * that already holds a value (devices made before baselines) keeps its floor: baseline 0, the
   * floor is the raw counter, never lower. A written B is refused unless `force`: then it is
   * undefined and every floor restarts at 0 (an operator reset). An unwritten B (a provisioning
   * that stopped) is replaced without `force`. A crash before B is written leaves counters with
   * values, so a re-run keeps their raw values as floors: higher, never lower (`force` resets).
   */
  async provision(o: { force?: boolean } = {}): Promise<ProvisionTpmFloorResult> {
    const index = this.baselinesIndex;
    const existing = await this.client.nv.readPublic(index);
    const force = o.force === true;
    if (existing && hasNvAttributes(existing.attributes, TPMA_NV.written) && !force)
      throw new EdgeguardError(
        'EG_EXISTS',
        `the anti-rollback floor on this TPM is already provisioned (NV index ${hexIndex(index)}); \`edgeguard device status\` shows it. Pass --force only to reset every floor to 0 (an operator reset after tampering, or for a new binding key).`,
      );
    const baselines = {} as Record<ReleaseKind, bigint>;
    const kept: ReleaseKind[] = [];
    for (const k of RELEASE_KINDS) {
      const c = this.indexOf(k);
      let pub = await this.client.nv.readPublic(c);
      if (!pub) {
        await this.client.nv.counterDefine(c);
        pub = await this.client.nv.readPublic(c);
      }
      if (!pub || nvType(pub.attributes) !== TPM_NT.counter || pub.dataSize !== 8)
        throw new EdgeguardError(
          'EG_EXISTS',
          `NV index ${hexIndex(c)} is not an 8-byte counter: another program uses it. Choose another base index (agent.yaml update.tpmNvIndex, --nv-index).`,
        );
      const auth = counterAuth(pub);
      if (!hasNvAttributes(pub.attributes, TPMA_NV.written)) {
        baselines[k] = await this.client.nv.counterIncrement(c, auth);
      } else {
        const value = (await this.client.nv.counterRead(c, auth)) ?? 0n;
        baselines[k] = force ? value : 0n;
        if (!force) kept.push(k);
      }
    }
    const policy = await this.key.keyPolicy();
    if (existing) await this.client.nv.undefine(index);
    await this.writeBaselines(baselines, policy);
    return { state: await this.state(), reset: Boolean(existing) && force, kept };
  }
}
