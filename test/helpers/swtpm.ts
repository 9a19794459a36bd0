/**
 * swtpm for tests: each test file that needs a TPM starts its own (fresh manufactured state, EK
 * certificate from a local CA, free ports) and removes it afterwards:
 *
 *   const tpm = await startTestTpm();   // in before()
 *   ... new TpmClient({ tcti: tpm.tcti }) ... tpm.ca.issuerCertPath ...
 *   await tpm.remove();                 // in after()
 *
 * Off CI, tests skip with a clear message when swtpm or tpm2-tools is missing: pass
 * `{ skip: TPM_SKIP }` to describe()/test(). With CI=true nothing skips, so a missing swtpm fails.
 */
import {
  missingSwtpmBinaries,
  startSwtpm,
  createLocalCa,
  type Swtpm,
  type SwtpmOptions,
  type LocalCa,
} from '../../src/tpm/swtpm.ts';
import { TpmClient } from '../../src/tpm/client.ts';
import type { EndorsementKeys } from '../../src/tpm/attest-client.ts';

export type { Swtpm, LocalCa };
export { createLocalCa };

const missing = missingSwtpmBinaries();

/** false when TPM tests must run; otherwise the reason they are skipped. */
export const TPM_SKIP: string | false =
  missing.length === 0 || process.env.CI === 'true'
    ? false
    : `swtpm/tpm2-tools not installed (missing ${missing.join(', ')}): TPM tests skipped; apt-get install swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0`;

if (TPM_SKIP) process.stderr.write(`# ${TPM_SKIP}\n`);

export function startTestTpm(opts: SwtpmOptions = {}): Promise<Swtpm> {
  return startSwtpm(opts);
}

export function stopTestTpm(tpm: Swtpm | undefined): Promise<void> {
  return tpm ? tpm.remove() : Promise.resolve();
}

/** A fresh swtpm with a client and an EK/AK pair: what an attesting device has. */
export interface TestTpmWithAk {
  tpm: Swtpm;
  client: TpmClient;
  keys: EndorsementKeys;
}

export async function startTestTpmWithAk(): Promise<TestTpmWithAk> {
  const tpm = await startTestTpm();
  const client = new TpmClient({ tcti: tpm.tcti });
  return { tpm, client, keys: await client.attestation.createEndorsementKeys() };
}
