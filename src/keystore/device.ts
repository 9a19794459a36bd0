/**
 * The device directory made by `edgeguard device init` and opened by `edgeguard run --device`:
 *
 *   device.json            what provider, which TCTI and PCR selection, the binding key's ids
 *   binding.pub            the binding public key (PEM SPKI): what operators wrap content keys to
 *   tpm provider:  binding.tpm.pub / binding.tpm.priv   TPM2B_PUBLIC / TPM2B_PRIVATE (TPM-encrypted)
 *                  identity.tpm.pub / identity.tpm.priv the identity key (no PCR policy), same forms
 *                  pcr-policy.pub                       the operator's PCR policy key (PEM), when given
 *                  pcr-authorizations/*.json            PCR values that key signed (tpm/pcr-authorization.ts)
 *                  ak.tpm.pub / ak.tpm.priv             the AK, same forms
 *                  ek.tpm.pub                           the EK public area
 *                  binding.certify.json                 TPM2_Certify evidence (certify-evidence.ts)
 *   software provider: binding.key                      PKCS#8 PEM private key, mode 0600
 *
 * Nothing in the directory is secret for the tpm provider; binding.key is, for the software one.
 * Byte-level layouts: docs/formats.md.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { mkdir, readFile, rename, writeFile, access } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { EdgeguardError, fsError } from '../errors/index.ts';
import {
  DEFAULT_BINDING_PCRS,
  TpmClient,
  formatPcrSelection,
  parsePcrSelection,
  SRK_TEMPLATE,
  BINDING_KEY_ALG,
  policySignerPublic,
  type PolicySigner,
} from '../tpm/index.ts';
import { SoftwareKeyStore } from './software.ts';
import { TpmKeyStore, type TpmKeyStorePolicy } from './tpm.ts';
import { PCR_AUTHORIZATIONS_DIR } from './pcr-authorizations.ts';
import { type KeyStore } from './types.ts';
import { CERTIFY_EVIDENCE_TYPE, type CertifyEvidence } from './certify-evidence.ts';

export const DEVICE_FILE = 'device.json';
export const DEVICE_TYPE = 'edgeguard-device';
export const FILES = {
  bindingPem: 'binding.pub',
  bindingTpmPublic: 'binding.tpm.pub',
  bindingTpmPrivate: 'binding.tpm.priv',
  akTpmPublic: 'ak.tpm.pub',
  akTpmPrivate: 'ak.tpm.priv',
  ekTpmPublic: 'ek.tpm.pub',
  certify: 'binding.certify.json',
  softwareKey: 'binding.key',
  identityTpmPublic: 'identity.tpm.pub',
  identityTpmPrivate: 'identity.tpm.priv',
  pcrPolicyKey: 'pcr-policy.pub',
} as const;

const hex = z.string().regex(/^[0-9a-f]*$/);
export const DeviceFileSchema = z.strictObject({
  type: z.literal(DEVICE_TYPE),
  version: z.literal(1),
  provider: z.enum(['tpm', 'software']),
  createdAt: z.string(),
  /** The posture label every report shows. */
  posture: z.string(),
  /** RFC 7638 thumbprint of the binding public key (what wrapped key files name). */
  bindingKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
  tpm: z
    .strictObject({
      tcti: z.string(),
      pcrs: z.string(),
      srkTemplate: z.string(),
      /** Name of the SRK at provisioning: pinned, checked before every use (EG_TPM_WRONG_DEVICE). */
      srkName: hex,
      bindingKeyAlg: z.string(),
      bindingName: hex,
      akName: hex,
      policyDigest: hex,
      /** The PCR values the policy was computed over, hex by bank and index. */
      pcrValues: z.record(z.string(), z.record(z.string(), hex)),
      /**
       * `pcr` (or absent: devices provisioned before authorized policies): policyDigest is PolicyPCR.
       * `pcr-or-authorized`: policyDigest = PolicyOR(pcrPolicyDigest, PolicyAuthorize(pcrPolicySigner)).
       */
      policyKind: z.enum(['pcr', 'pcr-or-authorized']).optional(),
      /** The provisioned PolicyPCR branch. */
      pcrPolicyDigest: hex.optional(),
      /** Name of the operator's PCR policy signing key (its PEM is pcr-policy.pub). */
      pcrPolicySigner: hex.optional(),
      /** Name of the identity key (identity.tpm.pub); absent until made (init, or the first TLS key load). */
      identityName: hex.optional(),
    })
    .optional(),
});
export type DeviceFile = z.infer<typeof DeviceFileSchema>;

export interface InitDeviceOptions {
  dir: string;
  /** A TCTI for the tpm provider; undefined means the software provider. */
  tcti?: string;
  pcrs?: string;
  /** The operator's PCR policy signing key (public PEM): the binding key also takes PCR values it signs. */
  pcrPolicyKey?: string;
}

export interface InitDeviceResult {
  dir: string;
  device: DeviceFile;
  files: string[];
  store: KeyStore;
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

async function writeNew(path: string, data: string | Uint8Array): Promise<void> {
  try {
    await writeFile(path, data, { flag: 'wx', mode: 0o644 });
  } catch (e) {
    throw fsError(e, path, 'write');
  }
}

/** Create the binding key (and with a TPM the EK, AK and certify evidence) and write DIR. */
export async function initDevice(o: InitDeviceOptions): Promise<InitDeviceResult> {
  const dir = resolve(o.dir);
  if (await exists(join(dir, DEVICE_FILE))) {
    throw new EdgeguardError(
      'EG_EXISTS',
      `${dir} already holds a device (${DEVICE_FILE}); use another directory or remove it first.`,
    );
  }
  const createdAt = new Date().toISOString();
  if (!o.tcti) {
    if (o.pcrs)
      throw new EdgeguardError(
        'EG_USAGE',
        '--pcrs only applies to a TPM (--tpm); the software provider has no PCR policy.',
      );
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const store = await SoftwareKeyStore.create(join(dir, FILES.softwareKey));
    await writeNew(join(dir, FILES.bindingPem), store.bindingPublicKey.export({ type: 'spki', format: 'pem' }));
    const device: DeviceFile = {
      type: DEVICE_TYPE,
      version: 1,
      provider: 'software',
      createdAt,
      posture: store.posture.label,
      bindingKey: store.posture.bindingKey,
    };
    await writeNew(join(dir, DEVICE_FILE), JSON.stringify(device, null, 2) + '\n');
    return { dir, device, files: [DEVICE_FILE, FILES.bindingPem, FILES.softwareKey], store };
  }

  const pcrs = parsePcrSelection(o.pcrs ?? DEFAULT_BINDING_PCRS);
  const signer = o.pcrPolicyKey !== undefined ? readPolicySigner(o.pcrPolicyKey, '--pcr-policy-key') : undefined;
  const client = new TpmClient({ tcti: o.tcti });
  await client.ping();
  const binding = await client.createBindingKey(pcrs, signer?.signer);
  const identity = await client.createIdentityKey();
  const srkName = await client.storageRootKeyName();
  const endorsement = await client.attestation.createEndorsementKeys();
  const certify = await client.attestation.certify(endorsement.ak, binding);
  const ekCert = await client.attestation.readEkCertificate();
  // The store answers with the session the key was made for (PolicyOR with a PCR policy key).
  const policy: TpmKeyStorePolicy = signer
    ? { kind: 'authorized', signerKey: signer.key, provisionedPolicy: binding.pcrPolicyDigest, deviceDir: dir }
    : { kind: 'pcr' };
  const store = new TpmKeyStore(o.tcti, binding, pcrs, srkName, policy);
  const evidence: CertifyEvidence = {
    type: CERTIFY_EVIDENCE_TYPE,
    version: 1,
    bindingPublic: binding.public.toString('base64'),
    bindingName: binding.name.toString('hex'),
    akPublic: endorsement.ak.public.toString('base64'),
    akName: endorsement.akName.toString('hex'),
    attest: certify.attest.toString('base64'),
    signature: certify.signature.toString('base64'),
    ekPublic: endorsement.ekPublic.toString('base64'),
    ...(ekCert ? { ekCertificate: ekCert.toString('base64') } : {}),
  };
  // Only now that the TPM did its part does the directory appear.
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const pcrValues: Record<string, Record<string, string>> = {};
  for (const [bank, vals] of Object.entries(binding.pcrValues)) {
    pcrValues[bank] = Object.fromEntries(Object.entries(vals).map(([i, v]) => [i, v.toString('hex')]));
  }
  const device: DeviceFile = {
    type: DEVICE_TYPE,
    version: 1,
    provider: 'tpm',
    createdAt,
    posture: store.posture.label,
    bindingKey: store.posture.bindingKey,
    tpm: {
      tcti: o.tcti,
      pcrs: formatPcrSelection(pcrs),
      srkTemplate: SRK_TEMPLATE,
      srkName: srkName.toString('hex'),
      bindingKeyAlg: BINDING_KEY_ALG,
      bindingName: binding.name.toString('hex'),
      akName: endorsement.akName.toString('hex'),
      policyDigest: binding.policyDigest.toString('hex'),
      pcrValues,
      policyKind: signer ? 'pcr-or-authorized' : 'pcr',
      pcrPolicyDigest: binding.pcrPolicyDigest.toString('hex'),
      ...(signer ? { pcrPolicySigner: signer.signer.name.toString('hex') } : {}),
      identityName: identity.name.toString('hex'),
    },
  };
  await writeNew(join(dir, FILES.bindingPem), store.bindingPublicKey.export({ type: 'spki', format: 'pem' }));
  await writeNew(join(dir, FILES.bindingTpmPublic), binding.public);
  await writeNew(join(dir, FILES.bindingTpmPrivate), binding.private);
  await writeNew(join(dir, FILES.akTpmPublic), endorsement.ak.public);
  await writeNew(join(dir, FILES.akTpmPrivate), endorsement.ak.private);
  await writeNew(join(dir, FILES.ekTpmPublic), endorsement.ekPublic);
  await writeNew(join(dir, FILES.identityTpmPublic), identity.public);
  await writeNew(join(dir, FILES.identityTpmPrivate), identity.private);
  if (signer) {
    await writeNew(join(dir, FILES.pcrPolicyKey), signer.key.export({ type: 'spki', format: 'pem' }));
    await mkdir(join(dir, PCR_AUTHORIZATIONS_DIR), { mode: 0o755 });
  }
  await writeNew(join(dir, FILES.certify), JSON.stringify(evidence, null, 2) + '\n');
  await writeNew(join(dir, DEVICE_FILE), JSON.stringify(device, null, 2) + '\n');
  const files = Object.values(FILES).filter((f) => f !== FILES.softwareKey && (signer || f !== FILES.pcrPolicyKey));
  return { dir, device, files: [DEVICE_FILE, ...files], store };
}

export async function readDeviceFile(dir: string): Promise<DeviceFile> {
  const path = join(resolve(dir), DEVICE_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const err = fsError(e, path, 'read');
    if (err.code === 'EG_NOT_FOUND')
      throw new EdgeguardError(
        'EG_NOT_FOUND',
        `${dir} is not a device directory (no ${DEVICE_FILE}); create one with \`edgeguard device init\`.`,
      );
    throw err;
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new EdgeguardError('EG_FORMAT', `${path} is not JSON.`);
  }
  const r = DeviceFileSchema.safeParse(v);
  if (!r.success)
    throw new EdgeguardError(
      'EG_FORMAT',
      `${path} is not a valid device file (${r.error.issues[0]?.path.join('.') || 'root'}: ${r.error.issues[0]?.message}).`,
    );
  if (r.data.provider === 'tpm' && !r.data.tpm)
    throw new EdgeguardError('EG_FORMAT', `${path} says provider "tpm" but has no "tpm" section.`);
  return r.data;
}

export interface OpenDeviceOptions {
  /** Use this TCTI instead of the one recorded in device.json (also: EDGEGUARD_TPM_TCTI). */
  tcti?: string;
}

/** Open the key store of a device directory: the function `edgeguard run --device DIR` uses. */
export async function openDeviceKeyStore(dir: string, opts: OpenDeviceOptions = {}): Promise<KeyStore> {
  const device = await readDeviceFile(dir);
  const abs = resolve(dir);
  if (device.provider === 'software') {
    return SoftwareKeyStore.open(join(abs, FILES.softwareKey));
  }
  const t = device.tpm!;
  const read = async (f: string) => {
    try {
      return await readFile(join(abs, f));
    } catch (e) {
      throw fsError(e, join(abs, f), 'read');
    }
  };
  const store = new TpmKeyStore(
    opts.tcti ?? process.env.EDGEGUARD_TPM_TCTI ?? t.tcti,
    { public: await read(FILES.bindingTpmPublic), private: await read(FILES.bindingTpmPrivate) },
    parsePcrSelection(t.pcrs),
    Buffer.from(t.srkName, 'hex'),
    await readBindingPolicy(abs, device),
  );
  if (store.posture.bindingKey !== device.bindingKey || store.posture.tpm?.bindingName !== t.bindingName) {
    throw new EdgeguardError(
      'EG_TAMPERED',
      `${FILES.bindingTpmPublic} does not match device.json's binding key; the device directory was altered.`,
    );
  }
  return store;
}

/** The operator's PCR policy key from PEM text: RSA-2048, as the TPM will see it. */
function readPolicySigner(pem: string, source: string): { key: KeyObject; signer: PolicySigner } {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (e) {
    throw new EdgeguardError(
      'EG_KEY_FORMAT',
      `${source} is not a PEM public key; pass the .pub written by \`edgeguard attest policy-key create\`.`,
      { cause: e },
    );
  }
  return { key, signer: policySignerPublic(key) };
}

/** How the binding key of a TPM device is used, from device.json (and pcr-policy.pub, checked by name). */
export async function readBindingPolicy(dir: string, device: DeviceFile): Promise<TpmKeyStorePolicy> {
  const t = device.tpm!;
  if ((t.policyKind ?? 'pcr') === 'pcr') return { kind: 'pcr' };
  const path = join(dir, FILES.pcrPolicyKey);
  if (!t.pcrPolicyDigest || !t.pcrPolicySigner)
    throw new EdgeguardError('EG_FORMAT', `${join(dir, DEVICE_FILE)} has an authorized policy without its digests.`);
  const pem = await readFile(path, 'utf8').catch((e) => {
    throw fsError(e, path, 'read');
  });
  const { key, signer } = readPolicySigner(pem, path);
  if (signer.name.toString('hex') !== t.pcrPolicySigner)
    throw new EdgeguardError(
      'EG_TAMPERED',
      `${path} is not the PCR policy key the binding key was made for; the device directory was altered.`,
    );
  return {
    kind: 'authorized',
    signerKey: key,
    provisionedPolicy: Buffer.from(t.pcrPolicyDigest, 'hex'),
    deviceDir: dir,
  };
}

/**
 * The key store of the device identity key (no PCR policy): what the TLS client key is wrapped
 * to, so the device can connect and report after any boot change. The software provider's store
 * is its only key. A TPM device provisioned before identity keys gets one now (device.json is
 * rewritten through a temporary file), unless `create` is false (then: undefined).
 */
export async function openDeviceIdentityStore(
  dir: string,
  opts: OpenDeviceOptions & { create?: boolean } = {},
): Promise<KeyStore | undefined> {
  const abs = resolve(dir);
  let device = await readDeviceFile(abs);
  if (device.provider === 'software') return SoftwareKeyStore.open(join(abs, FILES.softwareKey));
  const t = device.tpm!;
  const tcti = opts.tcti ?? process.env.EDGEGUARD_TPM_TCTI ?? t.tcti;
  const srkName = Buffer.from(t.srkName, 'hex');
  if (!t.identityName) {
    if (opts.create === false) return undefined;
    const name = await adoptOrCreateIdentityKey(abs, new TpmClient({ tcti, srkName }));
    device = { ...device, tpm: { ...t, identityName: name.toString('hex') } };
    const tmp = join(abs, `${DEVICE_FILE}.tmp-${process.pid}`);
    await writeFile(tmp, JSON.stringify(device, null, 2) + '\n', { mode: 0o644 }).catch((e) => {
      throw fsError(e, tmp, 'write');
    });
    await rename(tmp, join(abs, DEVICE_FILE));
  }
  const read = async (f: string) =>
    readFile(join(abs, f)).catch((e) => Promise.reject(fsError(e, join(abs, f), 'read')));
  const store = new TpmKeyStore(
    tcti,
    { public: await read(FILES.identityTpmPublic), private: await read(FILES.identityTpmPrivate) },
    [],
    srkName,
    { kind: 'none' },
  );
  if (store.posture.tpm?.bindingName !== device.tpm!.identityName)
    throw new EdgeguardError(
      'EG_TAMPERED',
      `${FILES.identityTpmPublic} does not match device.json's identity key; the device directory was altered.`,
    );
  return store;
}

/**
 * Identity key files left by a run that stopped before device.json was rewritten are adopted (if
 * they load in this TPM) rather than replaced, so a TLS key already rewrapped to them stays usable.
 */
async function adoptOrCreateIdentityKey(dir: string, client: TpmClient): Promise<Buffer> {
  const pubPath = join(dir, FILES.identityTpmPublic);
  const privPath = join(dir, FILES.identityTpmPrivate);
  if (await exists(pubPath)) {
    const blobs = { public: await readFile(pubPath), private: await readFile(privPath) };
    return client.loadKey(blobs);
  }
  const made = await client.createIdentityKey();
  await writeNew(privPath, made.private);
  await writeNew(pubPath, made.public);
  return made.name;
}
