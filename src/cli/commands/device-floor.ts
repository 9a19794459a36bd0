/**
 * The TPM anti-rollback floor on the device side (src/release/floor.ts): provisioned by `device
 * init` on TPM devices and by `device floor init` (devices made before floor baselines, or an
 * operator reset with --force), shown by `device status`.
 */
import type { Command } from 'commander';
import { EdgeguardError, isEdgeguardError } from '../../errors/index.ts';
import { TpmKeyStore, openDeviceKeyStore, type KeyStore } from '../../keystore/index.ts';
import {
  DEFAULT_FLOOR_NV_INDEX,
  TpmFloor,
  parseFloorNvIndex,
  type ProvisionTpmFloorResult,
  type TpmFloorState,
} from '../../release/index.ts';
import { Output, globalOptions } from '../output.ts';

export const NV_INDEX_OPTION_HELP = `first NV index of the anti-rollback floor (agent.yaml update.tpmNvIndex; default 0x${DEFAULT_FLOOR_NV_INDEX.toString(16)})`;

/** What status shows: per kind floor, counter and baseline, or why the floor cannot be read. */
export type FloorStatus =
  | { provisioned: true; baseIndex: string; baselinesIndex: string; kinds: Record<string, FloorKindStatus> }
  | { provisioned: false; code: string; message: string };

interface FloorKindStatus {
  floor: number;
  counter: string;
  baseline: string;
  counterIndex: string;
}

function hex(index: number): string {
  return `0x${index.toString(16).padStart(8, '0')}`;
}

function stateJson(s: TpmFloorState): FloorStatus {
  return {
    provisioned: true,
    baseIndex: hex(s.baseIndex),
    baselinesIndex: hex(s.baselinesIndex),
    kinds: Object.fromEntries(
      Object.values(s.kinds).map((k) => [
        k.kind,
        {
          floor: k.floor,
          counter: k.counter.toString(),
          baseline: k.baseline.toString(),
          counterIndex: hex(k.counterIndex),
        },
      ]),
    ),
  };
}

export function floorLines(f: FloorStatus): string[] {
  if (!f.provisioned) return [`anti-rollback floor: NOT usable, updates are refused (${f.code}): ${f.message}`];
  return [
    `anti-rollback floor (TPM counters at ${f.baseIndex}.., baselines at ${f.baselinesIndex}): provisioned`,
    ...Object.entries(f.kinds).map(
      ([kind, k]) =>
        `  ${kind.padEnd(8)} floor ${k.floor}  (counter ${k.counterIndex} = ${k.counter}, baseline ${k.baseline})`,
    ),
  ];
}

/** The floor of a TPM key store as status reports it (never throws for a floor that fails closed). */
export async function tpmFloorStatus(store: TpmKeyStore, baseIndex: number): Promise<FloorStatus> {
  try {
    return stateJson(await new TpmFloor(store, baseIndex).state());
  } catch (e) {
    if (isEdgeguardError(e, 'EG_FLOOR_TAMPERED') || isEdgeguardError(e, 'EG_FLOOR_UNPROVISIONED'))
      return { provisioned: false, code: e.code, message: e.message };
    throw e;
  }
}

/** Provision the floor of a just-made TPM device (`device init`); undefined and a warning when B already exists. */
export async function provisionNewDeviceFloor(
  store: KeyStore,
  baseIndex: number,
  out: Output,
  dir: string,
): Promise<FloorStatus | undefined> {
  if (!(store instanceof TpmKeyStore)) return undefined;
  try {
    return stateJson((await new TpmFloor(store, baseIndex).provision()).state);
  } catch (e) {
    if (!isEdgeguardError(e, 'EG_EXISTS')) throw e;
    out.warn(
      `this TPM's anti-rollback floor was provisioned before (for another binding key), so updates on this device are refused until an operator resets it: edgeguard device floor init --dir ${dir} --force (every floor restarts at 0).`,
    );
    return await tpmFloorStatus(store, baseIndex);
  }
}

function provisionLines(r: ProvisionTpmFloorResult): string[] {
  const kept = r.kept.length ? [`kept the floors of counters that already held a value: ${r.kept.join(', ')}`] : [];
  return [...floorLines(stateJson(r.state)), ...kept];
}

export function registerDeviceFloorCommands(device: Command): void {
  const floor = device.command('floor').description('the TPM anti-rollback floor (NV counters and their baselines)');
  floor
    .command('init')
    .description(
      'provision the anti-rollback floor on a TPM device made before floor baselines (counters that hold a value keep it as their floor); refused when already provisioned unless --force',
    )
    .requiredOption('--dir <dir>', 'device directory')
    .option('--tpm <tcti>', 'override the TCTI recorded in device.json')
    .option('--nv-index <index>', NV_INDEX_OPTION_HELP)
    .option('--force', 'operator reset: undefine the baselines index and restart every floor at 0')
    .action(async (opts: { dir: string; tpm?: string; nvIndex?: string; force?: boolean }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const baseIndex = opts.nvIndex ? parseFloorNvIndex(opts.nvIndex) : DEFAULT_FLOOR_NV_INDEX;
      const store = await openDeviceKeyStore(opts.dir, opts.tpm ? { tcti: opts.tpm } : {});
      if (!(store instanceof TpmKeyStore))
        throw new EdgeguardError(
          'EG_USAGE',
          `${opts.dir} has a software key store: its floor is the labelled file anti-rollback.json in the agent's update.dir, nothing to provision.`,
        );
      const r = await new TpmFloor(store, baseIndex).provision({ force: opts.force === true });
      if (r.reset)
        out.warn(
          'operator reset of the anti-rollback floor: every floor is 0 now, so releases older than the installed ones are accepted until the next install raises the floor.',
        );
      out.result({ ok: true, dir: opts.dir, reset: r.reset, kept: r.kept, floor: stateJson(r.state) }, [
        `device ${opts.dir}: anti-rollback floor ${r.reset ? 'reset' : 'provisioned'}`,
        ...provisionLines(r),
      ]);
    });
}
