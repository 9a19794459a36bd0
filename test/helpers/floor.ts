/**
 * A provisioned TPM anti-rollback floor for tests, as `edgeguard device init` leaves one: the
 * counters and the baselines index written under the binding key's policy.
 */
import { execFileSync } from 'node:child_process';
import { TpmKeyStore, type KeyStore } from '../../src/keystore/index.ts';
import { DEFAULT_FLOOR_NV_INDEX, TpmFloor } from '../../src/release/index.ts';

export async function provisionedTpmFloor(store: KeyStore, baseIndex = DEFAULT_FLOOR_NV_INDEX): Promise<TpmFloor> {
  if (!(store instanceof TpmKeyStore)) throw new Error('a TPM floor needs a TPM key store');
  const floor = new TpmFloor(store, baseIndex);
  await floor.provision();
  return floor;
}

/** Run a tpm2-tools command against the test's TPM (what an attacker with the TPM, or an operator, does). */
export function tpm2(tcti: string, tool: string, args: string[], input?: Uint8Array): Buffer {
  return execFileSync(tool, args, {
    env: { ...process.env, TPM2TOOLS_TCTI: tcti },
    stdio: ['pipe', 'pipe', 'pipe'],
    ...(input ? { input } : {}),
  });
}

export function nvHex(index: number): string {
  return `0x${index.toString(16)}`;
}
