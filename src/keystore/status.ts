/**
 * What `edgeguard device status` reports: whether the binding key answers with the PCRs as they
 * are now (the provisioned values, or an operator-signed authorization of the current ones), which
 * PCRs differ from the provisioned values (bank, index, provisioned, current), the identity key,
 * and the EK hash an operator puts in the control plane's auto-approve.txt.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { EdgeguardError, FILE_CAPS, fsError, readBoundedText } from '../errors/index.ts';
import { HASH_ALGS, parsePcrSelection, parseTpm2bPublic, type PcrValues } from '../tpm/index.ts';
import { parseCertifyEvidence, verifyCertifyEvidence } from './certify-evidence.ts';
import {
  FILES,
  openDeviceIdentityStore,
  openDeviceKeyStore,
  readDeviceFile,
  type OpenDeviceOptions,
} from './device.ts';
import { PCR_AUTHORIZATIONS_DIR, choosePolicyBranch, loadPcrAuthorizations } from './pcr-authorizations.ts';
import { TpmKeyStore } from './tpm.ts';
import type { KeyStorePosture } from './types.ts';

export interface PcrDifference {
  bank: string;
  index: number;
  provisioned: string;
  current: string;
}

export interface TpmKeyStatus {
  pcrs: string;
  policyKind: 'pcr' | 'pcr-or-authorized';
  certify: { verified: true; bindingName: string; akName: string };
  /** The binding key answers now (provisioned values, or a matching authorization). */
  satisfied: boolean;
  branch: 'provisioned' | 'authorized' | 'none';
  /** The authorization that applies, when branch is `authorized`. */
  authorization?: string;
  /** Provisioned PCRs whose current value differs. */
  differences: PcrDifference[];
  authorizations: {
    valid: Array<{ file: string; pcrs: string; label?: string; createdAt: string }>;
    rejected: Array<{ file: string; code: string; message: string }>;
  };
  identityKey: { name: string } | null;
  /** SHA-256 of the EK's SubjectPublicKeyInfo (DER), hex: a line of the server's auto-approve.txt. */
  ekSha256: string;
}

export interface DeviceKeyStatus {
  dir: string;
  provider: 'tpm' | 'software';
  posture: KeyStorePosture;
  tpm?: TpmKeyStatus;
}

async function readText(path: string): Promise<string> {
  return readBoundedText(path, FILE_CAPS.certificate, 'read');
}

function hexValues(v: Record<string, Record<string, string>>): PcrValues {
  const out: PcrValues = {};
  for (const [bank, entries] of Object.entries(v))
    out[bank] = Object.fromEntries(Object.entries(entries).map(([i, h]) => [Number(i), Buffer.from(h, 'hex')]));
  return out;
}

export async function deviceKeyStatus(dir: string, opts: OpenDeviceOptions = {}): Promise<DeviceKeyStatus> {
  const abs = resolve(dir);
  const d = await readDeviceFile(abs);
  const store = await openDeviceKeyStore(abs, opts);
  if (!(store instanceof TpmKeyStore) || !d.tpm) return { dir: abs, provider: store.provider, posture: store.posture };
  const t = d.tpm;
  const ev = verifyCertifyEvidence(parseCertifyEvidence(await readText(join(abs, FILES.certify))), {
    bindingPem: await readText(join(abs, FILES.bindingPem)),
  });
  const sel = parsePcrSelection(t.pcrs);
  const current = await store.client.readPcrs(sel);
  const provisioned = hexValues(t.pcrValues);
  const differences: PcrDifference[] = [];
  for (const b of sel) {
    const bank = HASH_ALGS[b.hashAlg]!.name;
    for (const i of b.pcrs) {
      const was = provisioned[bank]?.[i];
      const now = current[bank]![i]!;
      if (!was || !was.equals(now))
        differences.push({ bank, index: i, provisioned: was?.toString('hex') ?? '', current: now.toString('hex') });
    }
  }
  const status: Omit<TpmKeyStatus, 'satisfied' | 'branch'> = {
    pcrs: t.pcrs,
    policyKind: t.policyKind ?? 'pcr',
    certify: { verified: true, bindingName: ev.bindingName, akName: ev.akName },
    differences,
    authorizations: { valid: [], rejected: [] },
    identityKey: null,
    ekSha256: await ekSha256Of(join(abs, FILES.ekTpmPublic)),
  };
  const identity = await openDeviceIdentityStore(abs, { ...opts, create: false });
  if (identity?.posture.tpm) status.identityKey = { name: identity.posture.tpm.bindingName };
  const p = store.policy;
  if (p.kind !== 'authorized')
    return { dir: abs, provider: 'tpm', posture: store.posture, tpm: { ...status, ...plainBranch(differences) } };
  const auths = await loadPcrAuthorizations(join(abs, PCR_AUTHORIZATIONS_DIR), p.signerKey);
  status.authorizations = {
    valid: auths.valid.map(({ file, auth }) => ({
      file,
      pcrs: auth.file.pcrs,
      createdAt: auth.file.createdAt,
      ...(auth.file.label !== undefined ? { label: auth.file.label } : {}),
    })),
    rejected: auths.rejected,
  };
  const branch = await choosePolicyBranch(store.client, sel, p.provisionedPolicy, auths);
  return {
    dir: abs,
    provider: 'tpm',
    posture: store.posture,
    tpm: {
      ...status,
      satisfied: branch.branch !== 'none',
      branch: branch.branch,
      ...(branch.branch === 'authorized' ? { authorization: branch.file } : {}),
    },
  };
}

function plainBranch(differences: PcrDifference[]): Pick<TpmKeyStatus, 'satisfied' | 'branch'> {
  return differences.length === 0 ? { satisfied: true, branch: 'provisioned' } : { satisfied: false, branch: 'none' };
}

async function readBinary(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    throw fsError(e, path, 'read');
  }
}

/** The error `device status` exits with when the binding key would be refused now. */
export function policyNotSatisfied(s: TpmKeyStatus): EdgeguardError {
  return new EdgeguardError(
    'EG_TPM_POLICY',
    `the binding key's policy is not satisfied by the current PCRs (${s.differences.length} PCR(s) differ from the provisioned values${s.policyKind === 'pcr-or-authorized' ? ' and no PCR authorization approves them' : ''}): model keys will be refused.`,
  );
}

/**
 * The EK's hash, from attest: loaded only here, because attest brings the X.509 library (about
 * 0.3 s of start-up) that nothing else the key store serves (unwrap, run, install) needs.
 */
async function ekSha256Of(path: string): Promise<string> {
  const { ekPublicKeyHash } = await import('../attest/index.ts');
  return ekPublicKeyHash(parseTpm2bPublic(await readBinary(path)));
}
