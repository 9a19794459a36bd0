/**
 * EG-01 (model encrypted at rest, its key bound to the TPM and the boot state) and EG-06 (what the
 * device runs is signed). Nothing is unwrapped or decrypted: the binding key's recorded policy is
 * read from the device file, and the model directories are scanned for anything a thief could run.
 */
import { basename, dirname, join, resolve } from 'node:path';
import { readPublicSigningKey } from '../crypto/index.ts';
import { isEdgeguardError } from '../errors/index.ts';
import { SPOOL_SUFFIX } from '../fleet/index.ts';
import {
  DEVICE_FILES,
  PCR_AUTHORIZATIONS_DIR,
  loadPcrAuthorizations,
  readBindingPolicy,
  readDeviceFile,
  type DeviceFile,
} from '../keystore/index.ts';
import { inspectPackage, signaturePathFor, verifyPackage } from '../model/index.ts';
import { byteEntropy, looksLikeOnnx, readHead, sha256File, walkFiles } from './evidence.ts';
import { combine, type CheckDefinition, type ChecklistTarget, type Evidence } from './types.ts';

/** A file this large next to the packages that is not ciphertext is a model copy until shown otherwise. */
const LARGE_FILE_BYTES = 1024 * 1024;
/** Below this, bytes are not ciphertext (AEAD output measures 7.99+ over 64 KiB). */
const CIPHERTEXT_MIN_ENTROPY = 7.9;
/** A report holds at most 64 evidence entries (report-schema.ts): the rest are counted, not listed. */
const MAX_AUTHORIZATIONS_LISTED = 16;

export function modelPaths(target: ChecklistTarget): string[] {
  const m = target.config.models;
  return [...new Set([m.primary, m.ensemble, m.fallback].filter((p): p is string => p !== undefined))];
}

function isPackageFile(path: string): boolean {
  return path.endsWith('.egm') || path.endsWith('.egm.sig.json');
}

/** A plaintext model on disk: an .onnx, ONNX protobuf bytes, or a large file that is not ciphertext. */
async function plaintextModelReason(path: string): Promise<string | undefined> {
  if (path.endsWith('.onnx')) return 'an .onnx file';
  const { head, size } = await readHead(path).catch(() => ({ head: Buffer.alloc(0), size: 0 }));
  if (looksLikeOnnx(head)) return 'ONNX protobuf bytes';
  if (isPackageFile(path)) return undefined;
  if (size >= LARGE_FILE_BYTES && byteEntropy(head) < CIPHERTEXT_MIN_ENTROPY)
    return `a ${size}-byte file that is not ciphertext`;
  return undefined;
}

/** Files agent.yaml names that may sit next to the packages and be large: never model copies. */
function configuredFiles(target: ChecklistTarget): Set<string> {
  const c = target.config;
  const named = [c.journal.path, c.guard.profile, c.review.publicKey, ...c.trust.publicKeys];
  if ('wrapped' in c.contentKey) named.push(c.contentKey.wrapped);
  return new Set(named.filter((p): p is string => p !== undefined).map((p) => resolve(p)));
}

async function scanModelDirs(target: ChecklistTarget, fails: string[], evidence: Evidence[]): Promise<void> {
  const { files: all } = await walkFiles([...new Set(modelPaths(target).map((p) => dirname(p)))]);
  const known = configuredFiles(target);
  const files = all.filter((f) => !known.has(f) && !f.endsWith(SPOOL_SUFFIX));
  for (const file of files) {
    const reason = await plaintextModelReason(file);
    if (!reason) continue;
    fails.push(`plaintext model on disk: ${file} (${reason})`);
    evidence.push({ name: 'plaintext file sha256', value: await sha256File(file), path: file });
  }
}

async function checkPackages(target: ChecklistTarget, fails: string[], evidence: Evidence[]): Promise<number> {
  let ok = 0;
  for (const path of modelPaths(target)) {
    try {
      const pkg = await inspectPackage(path);
      evidence.push({ name: 'package sha256', value: await sha256File(path), path });
      evidence.push({ name: 'package cipher suite', value: pkg.header.suite, path });
      ok++;
    } catch (e) {
      if (!isEdgeguardError(e)) throw e;
      fails.push(`${basename(path)} is not an encrypted package (${e.code}: ${e.message})`);
    }
  }
  return ok;
}

/**
 * The binding key's policy as evidence. An authorized policy's digest is PolicyOR(provisioned
 * PolicyPCR, PolicyAuthorize(PCR policy key)), so it is labelled as such, with the provisioned
 * branch, the policy key's TPM name and every authorization on the device (checked against that
 * key in software; the TPM is not asked).
 */
async function policyEvidence(
  dir: string,
  device: DeviceFile,
  evidence: Evidence[],
): Promise<{ label: string; withoutPcr7: string[] }> {
  const t = device.tpm!;
  const withoutPcr7: string[] = [];
  if ((t.policyKind ?? 'pcr') === 'pcr') {
    evidence.push({ name: 'PolicyPCR digest', value: t.policyDigest });
    return { label: `PolicyPCR(${t.pcrs})`, withoutPcr7 };
  }
  evidence.push({ name: 'PolicyOR digest (provisioned PolicyPCR or PolicyAuthorize)', value: t.policyDigest });
  evidence.push({ name: 'provisioned PolicyPCR digest', value: t.pcrPolicyDigest ?? '' });
  evidence.push({
    name: 'PCR policy key (TPM name)',
    value: t.pcrPolicySigner ?? '',
    path: join(dir, DEVICE_FILES.pcrPolicyKey),
  });
  const policy = await readBindingPolicy(dir, device);
  if (policy.kind === 'authorized') {
    const auths = await loadPcrAuthorizations(join(dir, PCR_AUTHORIZATIONS_DIR), policy.signerKey);
    const listed: Evidence[] = [];
    for (const { file, auth } of auths.valid) {
      const label = auth.file.label !== undefined ? ` (${auth.file.label})` : '';
      listed.push({
        name: 'PCR authorization',
        value: `${auth.file.pcrs} = ${auth.file.approvedPolicy}${label}`,
        path: file,
      });
      if (!auth.selection.some((b) => b.pcrs.includes(7))) withoutPcr7.push(file);
    }
    for (const r of auths.rejected) listed.push({ name: 'ignored PCR authorization', value: r.code, path: r.file });
    evidence.push(...listed.slice(0, MAX_AUTHORIZATIONS_LISTED));
    evidence.push({
      name: 'PCR authorizations',
      value: `${auths.valid.length} valid, ${auths.rejected.length} ignored${listed.length > MAX_AUTHORIZATIONS_LISTED ? ` (first ${MAX_AUTHORIZATIONS_LISTED} listed)` : ''}`,
      path: join(dir, PCR_AUTHORIZATIONS_DIR),
    });
  }
  const signer = t.pcrPolicySigner?.slice(0, 16) ?? '';
  return { label: `PolicyOR(PolicyPCR(${t.pcrs}), PolicyAuthorize(PCR policy key ${signer}…))`, withoutPcr7 };
}

async function keyBinding(device: DeviceFile, target: ChecklistTarget, evidence: Evidence[]) {
  const fails: string[] = [];
  const warns: string[] = [];
  const passes: string[] = [];
  if ('file' in target.config.contentKey) {
    fails.push(`the content key is a plain key file on the device (${target.config.contentKey.file})`);
    return { fails, warns, passes };
  }
  evidence.push({ name: 'binding key (RFC 7638 thumbprint)', value: device.bindingKey });
  if (device.provider === 'software' || !device.tpm) {
    warns.push(`content key wrapped to a ${device.posture}`);
    return { fails, warns, passes };
  }
  evidence.push({ name: 'PCR selection', value: device.tpm.pcrs });
  const policy = await policyEvidence(resolve(target.deviceDir), device, evidence);
  evidence.push({ name: 'binding key name', value: device.tpm.bindingName });
  for (const file of policy.withoutPcr7)
    fails.push(`the PCR authorization ${file} does not cover PCR 7: under it the key unwraps in any Secure Boot state`);
  if (!device.tpm.policyDigest || !/\b7\b/.test(device.tpm.pcrs.split(':')[1] ?? ''))
    fails.push(`the binding key's policy (${device.tpm.pcrs}) does not cover PCR 7 (Secure Boot state)`);
  else passes.push(`content key wrapped to the TPM binding key under ${policy.label}`);
  return { fails, warns, passes };
}

export const modelAtRest: CheckDefinition = {
  id: 'EG-01',
  title: 'model encrypted at rest, key bound to the TPM and boot state',
  audit:
    "device.json's binding key and its PCR policy; agent.yaml's content key; every model file is an encrypted package; no plaintext model (.onnx, ONNX bytes, large non-ciphertext file) in the model directories",
  expected:
    'models only as encrypted .egm packages; content key wrapped to a TPM binding key whose PolicyPCR (and every PCR authorization) covers the boot state (PCR 7)',
  remediation:
    'delete plaintext models (keep only .egm + .sig.json), wrap the content key to the device (edgeguard key wrap) and configure contentKey: { wrapped, device } on a device initialised with --tpm',
  async run(target) {
    const evidence: Evidence[] = [];
    const device = await readDeviceFile(target.deviceDir);
    const findings = await keyBinding(device, target, evidence);
    const packages = await checkPackages(target, findings.fails, evidence);
    await scanModelDirs(target, findings.fails, evidence);
    if (packages > 0) findings.passes.push(`${packages} encrypted package(s), no plaintext model found`);
    return { ...combine(findings), evidence };
  },
};

export const signedUpdates: CheckDefinition = {
  id: 'EG-06',
  title: 'model updates signed by a trusted publisher',
  audit: "each configured package's DSSE signature verified against agent.yaml's trust.publicKeys",
  expected: 'every package carries a valid signature by a trusted publisher key, bound to its header',
  remediation:
    're-publish the package with edgeguard model pack --sign-key (or model sign) and list the publisher key in trust.publicKeys',
  async run(target) {
    const evidence: Evidence[] = [];
    const fails: string[] = [];
    const passes: string[] = [];
    const publicKeys = await Promise.all(target.config.trust.publicKeys.map((p) => readPublicSigningKey(p)));
    for (const p of target.config.trust.publicKeys)
      evidence.push({ name: 'trusted publisher key sha256', value: await sha256File(p), path: p });
    for (const path of modelPaths(target)) {
      try {
        const verified = await verifyPackage(path, { publicKeys });
        passes.push(`${basename(path)} signed by ${verified.signedBy}`);
        evidence.push({ name: 'signature sha256', value: await sha256File(signaturePathFor(path)), path });
      } catch (e) {
        if (!isEdgeguardError(e)) throw e;
        fails.push(`${basename(path)}: ${e.code}: ${e.message}`);
      }
    }
    return { ...combine({ fails, warns: [], passes }), evidence };
  },
};
