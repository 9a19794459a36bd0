/**
 * The device directory made by `edgeguard device init` and opened by `edgeguard run --device`:
 *
 *   device.json            what provider, which TCTI and PCR selection, the binding key's ids
 *   binding.pub            the binding public key (PEM SPKI): what operators wrap content keys to
 *   tpm provider:  binding.tpm.pub / binding.tpm.priv   TPM2B_PUBLIC / TPM2B_PRIVATE (TPM-encrypted)
 *                  ak.tpm.pub / ak.tpm.priv             the AK, same forms
 *                  ek.tpm.pub                           the EK public area
 *                  binding.certify.json                 TPM2_Certify evidence (certify-evidence.ts)
 *   software provider: binding.key                      PKCS#8 PEM private key, mode 0600
 *
 * Nothing in the directory is secret for the tpm provider; binding.key is, for the software one.
 * Byte-level layouts: docs/formats.md.
 */
import { mkdir, readFile, writeFile, access } from 'node:fs/promises';
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
} from '../tpm/index.ts';
import { SoftwareKeyStore } from './software.ts';
import { TpmKeyStore } from './tpm.ts';
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
    })
    .optional(),
});
export type DeviceFile = z.infer<typeof DeviceFileSchema>;

export interface InitDeviceOptions {
  dir: string;
  /** A TCTI for the tpm provider; undefined means the software provider. */
  tcti?: string;
  pcrs?: string;
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
  const client = new TpmClient({ tcti: o.tcti });
  await client.ping();
  const binding = await client.createBindingKey(pcrs);
  const srkName = await client.storageRootKeyName();
  const endorsement = await client.createEndorsementKeys();
  const certify = await client.certify(endorsement.ak, binding);
  const ekCert = await client.readEkCertificate();
  const store = new TpmKeyStore(o.tcti, binding, pcrs, srkName);
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
    },
  };
  await writeNew(join(dir, FILES.bindingPem), store.bindingPublicKey.export({ type: 'spki', format: 'pem' }));
  await writeNew(join(dir, FILES.bindingTpmPublic), binding.public);
  await writeNew(join(dir, FILES.bindingTpmPrivate), binding.private);
  await writeNew(join(dir, FILES.akTpmPublic), endorsement.ak.public);
  await writeNew(join(dir, FILES.akTpmPrivate), endorsement.ak.private);
  await writeNew(join(dir, FILES.ekTpmPublic), endorsement.ekPublic);
  await writeNew(join(dir, FILES.certify), JSON.stringify(evidence, null, 2) + '\n');
  await writeNew(join(dir, DEVICE_FILE), JSON.stringify(device, null, 2) + '\n');
  return { dir, device, files: [DEVICE_FILE, ...Object.values(FILES).filter((f) => f !== FILES.softwareKey)], store };
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
  );
  if (store.posture.bindingKey !== device.bindingKey || store.posture.tpm?.bindingName !== t.bindingName) {
    throw new EdgeguardError(
      'EG_TAMPERED',
      `${FILES.bindingTpmPublic} does not match device.json's binding key; the device directory was altered.`,
    );
  }
  return store;
}
