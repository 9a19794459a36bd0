/**
 * The anti-rollback floor: the lowest release version a device accepts, per release kind, that
 * only grows. The installer refuses a release below it and raises it to the release's minVersion
 * after the switch (docs/threat-model.md, "Rollback").
 *
 *   TPM devices: one TPM NV counter index per kind (TPM_NT_COUNTER, owner-authorized). The TPM
 *     itself refuses to lower it: TPM2_NV_Increment only adds one, and an index undefined and
 *     defined again starts at the largest value any counter of this TPM ever held. The floor is
 *     the counter's value, so a raise costs one increment per version step.
 *   Software key stores: a file (anti-rollback.json), labelled as such: anyone who can write the
 *     device's data directory can lower it.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { EdgeguardError, fsError } from '../errors/index.ts';
import type { TpmClient } from '../tpm/index.ts';
import { replaceFileDurablySync } from './durable-file.ts';
import { RELEASE_KINDS, type ReleaseKind } from './release-target.ts';

export const SOFTWARE_FLOOR_LABEL = 'software floor: a file, not hardware-protected';
export const TPM_FLOOR_LABEL = 'TPM NV counter: only grows';
/** Default first NV index (owner range); kinds use BASE, BASE+1, BASE+2 in RELEASE_KINDS order. */
export const DEFAULT_FLOOR_NV_INDEX = 0x01800100;
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

export class TpmFloor implements AntiRollbackFloor {
  readonly provider = 'tpm' as const;
  readonly label = TPM_FLOOR_LABEL;

  constructor(
    private readonly client: TpmClient,
    readonly baseIndex = DEFAULT_FLOOR_NV_INDEX,
  ) {}

  indexOf(kind: ReleaseKind): number {
    return this.baseIndex + RELEASE_KINDS.indexOf(kind);
  }

  async read(kind: ReleaseKind): Promise<number> {
    return toVersion(await this.client.nvCounterRead(this.indexOf(kind)));
  }

  /**
   * Read-then-increment is not atomic on the TPM: two raises at once (the installer's commit and a
   * serving agent's start-up recovery after the switch) would both increment and overshoot the
   * floor past the installed version. Raises of one index are serialized within the process.
   */
  raise(kind: ReleaseKind, to: number): Promise<number> {
    const index = this.indexOf(kind);
    const run = (RAISING.get(index) ?? Promise.resolve()).then(() => this.raiseNow(index, kind, to));
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

  private async raiseNow(index: number, kind: ReleaseKind, to: number): Promise<number> {
    let value = await this.client.nvCounterRead(index);
    if (value === undefined) {
      await this.client.nvCounterDefine(index);
      value = 0n;
    }
    if (to - toVersion(value) > MAX_FLOOR_STEP)
      throw new EdgeguardError(
        'EG_USAGE',
        `raising the ${kind} floor from ${value} to ${to} takes more than ${MAX_FLOOR_STEP} TPM counter increments; use small consecutive release versions.`,
      );
    while (toVersion(value) < to) value = await this.client.nvCounterIncrement(index);
    return toVersion(value);
  }
}

function toVersion(v: bigint | undefined): number {
  if (v === undefined) return 0;
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}
