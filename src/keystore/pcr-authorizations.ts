/**
 * The device's PCR authorizations (DIR/pcr-authorizations/*.json, tpm/pcr-authorization.ts): which
 * branch of the binding key's policy holds now. Either the PCRs still hold their provisioned
 * values, or one of the operator-signed authorizations approves the values they hold; otherwise
 * the key is refused before the TPM is asked (EG_TPM_POLICY), and the TPM would refuse it anyway.
 *
 * A file that does not parse, or is signed by another key, authorizes nothing: it is reported
 * (`device status`) and skipped, never trusted.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { EdgeguardError, FILE_CAPS, readBoundedText } from '../errors/index.ts';
import {
  TPM_ALG,
  formatPcrSelection,
  parsePcrAuthorization,
  policyPcrDigest,
  type ParsedPcrAuthorization,
  type PcrSelection,
  type PcrValues,
  type SignedPcrPolicy,
  type TpmClient,
} from '../tpm/index.ts';

export const PCR_AUTHORIZATIONS_DIR = 'pcr-authorizations';

export interface LoadedAuthorizations {
  valid: Array<{ file: string; auth: ParsedPcrAuthorization }>;
  rejected: Array<{ file: string; code: string; message: string }>;
}

/** Every *.json in `dir`, parsed and checked against the signer; a missing directory is empty. */
export async function loadPcrAuthorizations(dir: string, signerKey: KeyObject): Promise<LoadedAuthorizations> {
  const out: LoadedAuthorizations = { valid: [], rejected: [] };
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();
  } catch {
    return out;
  }
  for (const name of names.slice(0, 256)) {
    const file = join(dir, name);
    try {
      const text = await readBoundedText(file, FILE_CAPS.key, 'read');
      out.valid.push({ file, auth: parsePcrAuthorization(text, { signerKey, source: file }) });
    } catch (e) {
      const err = e instanceof EdgeguardError ? e : new EdgeguardError('EG_FORMAT', `${file} could not be read.`);
      out.rejected.push({ file, code: err.code, message: err.message });
    }
  }
  return out;
}

export type PolicyBranch =
  | { branch: 'provisioned' }
  | { branch: 'authorized'; file: string; authorization: SignedPcrPolicy }
  | { branch: 'none' };

/** Which branch the current PCRs satisfy: the provisioned values first, then each authorization. */
export async function choosePolicyBranch(
  client: TpmClient,
  pcrs: PcrSelection,
  provisionedPolicy: Buffer,
  auths: LoadedAuthorizations,
): Promise<PolicyBranch> {
  const cache = new Map<string, PcrValues>();
  const read = async (sel: PcrSelection): Promise<PcrValues> => {
    const k = formatPcrSelection(sel);
    if (!cache.has(k)) cache.set(k, await client.readPcrs(sel));
    return cache.get(k)!;
  };
  if (policyPcrDigest(pcrs, await read(pcrs), TPM_ALG.SHA256).equals(provisionedPolicy))
    return { branch: 'provisioned' };
  for (const { file, auth } of auths.valid) {
    if (policyPcrDigest(auth.selection, await read(auth.selection), TPM_ALG.SHA256).equals(auth.approvedPolicy)) {
      return {
        branch: 'authorized',
        file,
        authorization: { selection: auth.selection, approvedPolicy: auth.approvedPolicy, signature: auth.signature },
      };
    }
  }
  return { branch: 'none' };
}
