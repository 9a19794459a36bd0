/**
 * A device laid out like the demo's, for the checklist tests: a software key store, the two demo
 * models packed and signed, the content key wrapped to the device, a calibrated guard profile, a
 * review key and one sealed item in the spool, a device certificate from a real fleet CA, a signed
 * journal, and a root directory whose efivarfs says Secure Boot is on.
 */
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import YAML from 'yaml';
import { Journal, journalSignerFromKey, type AuditEvent } from '../../src/audit/index.ts';
import { sealReviewItem, spoolFileName } from '../../src/fleet/index.ts';
import { EFI_GLOBAL_VARIABLE_GUID } from '../../src/harden/index.ts';
import { encodeWrappedKeyFile, initDevice, wrapContentKey } from '../../src/keystore/index.ts';
import { packModel, parseModelMetadata } from '../../src/model/index.ts';
import { FleetCa } from '../../src/pki/index.ts';
import { FIXTURES, writeKeys } from '../helpers/workspace.ts';

export const CONTROL_PLANE = 'https://10.77.0.2:8443';

export interface DemoDevice {
  /** Holds agent.yaml, the packages, the keys' public halves, the spool and the journal. */
  dir: string;
  deviceDir: string;
  configPath: string;
  modelsDir: string;
  spoolDir: string;
  journalPath: string;
  /** A root with sys/firmware/efi/efivars (Secure Boot on, user mode). */
  root: string;
}

/** Attributes of a firmware boolean variable (boot-service | runtime access), then its byte. */
export function efiBoolean(value: 0 | 1): Buffer {
  return Buffer.from([0x06, 0, 0, 0, value]);
}

export async function setSecureBoot(root: string, secureBoot: 0 | 1, setupMode: 0 | 1 = 0): Promise<void> {
  const efivars = join(root, 'sys', 'firmware', 'efi', 'efivars');
  await mkdir(efivars, { recursive: true });
  await writeFile(join(efivars, `SecureBoot-${EFI_GLOBAL_VARIABLE_GUID}`), efiBoolean(secureBoot));
  await writeFile(join(efivars, `SetupMode-${EFI_GLOBAL_VARIABLE_GUID}`), efiBoolean(setupMode));
}

const journalEvent = (i: number): AuditEvent => ({
  type: 'device.revoked',
  time: '2026-11-25T20:00:00.000Z',
  actor: { kind: 'admin', id: 'alice' },
  subject: `dev-${i}`,
  outcome: 'success',
  details: { deviceId: `dev-${i}`, reason: 'lost', revokedSerials: [] },
});

async function packDemoModels(dir: string, modelsDir: string) {
  const keys = await writeKeys(dir);
  const meta = YAML.parse(await readFile(join(FIXTURES, 'models', 'mnist.meta.yaml'), 'utf8')) as object;
  for (const [file, name] of [
    ['mnist-cnn.onnx', 'mnist-cnn'],
    ['mnist-mlp.onnx', 'mnist-mlp'],
  ] as const)
    await packModel({
      inputPath: join(FIXTURES, 'models', file),
      outputPath: join(modelsDir, `${name}.egm`),
      contentKey: keys.contentKey,
      signer: keys.signer,
      metadata: parseModelMetadata({ ...meta, name, version: 1, format: 'onnx' }),
    });
  return keys;
}

async function deviceCertificate(dir: string) {
  const ca = await FleetCa.create(join(dir, 'ca'), 'checklist test passphrase');
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issued = await ca.issueDeviceCertificate({
    deviceId: 'dev-00000000000c0ffe',
    keyProvider: 'software',
    publicKey: pair.publicKey.export({ type: 'spki', format: 'der' }),
  });
  await writeFile(join(dir, 'fleet-ca.pem'), ca.rootPem);
  await writeFile(join(dir, 'device.crt'), issued.chainPem);
  await writeFile(join(dir, 'device.key'), pair.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return pair;
}

async function sealedSpoolItem(spoolDir: string, reviewPublicPem: string): Promise<void> {
  const item = sealReviewItem(
    createPublicKey(reviewPublicPem),
    { contentType: 'image/png', verdict: 'flag', reasons: [] },
    await readFile(join(FIXTURES, 'guard', 'fgsm-4-as-8.png')),
  );
  await writeFile(join(spoolDir, spoolFileName(Date.now(), item.id)), item.bytes);
}

/**
 * `tpm`: the key store on this TPM (TCTI) with this PCR selection, and the operator's PCR policy key
 * (PEM) when given; default a software key store.
 */
export async function makeDemoDevice(
  dir: string,
  tpm?: { tcti: string; pcrs?: string; pcrPolicyKey?: string },
): Promise<DemoDevice> {
  const d: DemoDevice = {
    dir,
    deviceDir: join(dir, 'device'),
    configPath: join(dir, 'agent.yaml'),
    modelsDir: join(dir, 'models'),
    spoolDir: join(dir, 'review-spool'),
    journalPath: join(dir, 'audit.journal'),
    root: join(dir, 'root'),
  };
  for (const sub of [d.modelsDir, d.spoolDir]) await mkdir(sub, { recursive: true });
  const { store } = await initDevice({ dir: d.deviceDir, ...tpm });
  await mkdir(join(dir, 'publisher'));
  const keys = await packDemoModels(join(dir, 'publisher'), d.modelsDir);
  await writeFile(
    join(dir, 'mnist.key.wrapped'),
    encodeWrappedKeyFile(wrapContentKey(keys.contentKey, store.bindingPublicKey)),
  );
  await copyFile(keys.publicKeyPath, join(dir, 'publisher.pub'));
  await copyFile(join(FIXTURES, 'guard', 'mnist-cnn.profile.json'), join(dir, 'mnist-cnn.profile.json'));
  const review = generateKeyPairSync('x25519');
  const reviewPem = review.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  await writeFile(join(dir, 'review.pub'), reviewPem);
  await sealedSpoolItem(d.spoolDir, reviewPem);
  const deviceKey = await deviceCertificate(dir);
  const journal = await Journal.open(d.journalPath, journalSignerFromKey(deviceKey.privateKey), deviceKey.publicKey);
  await journal.append([0, 1, 2, 3].map(journalEvent));
  await setSecureBoot(d.root, 1);
  await writeFile(d.configPath, YAML.stringify(agentYaml()));
  return d;
}

function agentYaml() {
  return {
    trust: { publicKeys: ['publisher.pub'] },
    contentKey: { wrapped: 'mnist.key.wrapped', device: 'device' },
    models: { primary: 'models/mnist-cnn.egm', ensemble: 'models/mnist-mlp.egm' },
    guard: { profile: 'mnist-cnn.profile.json' },
    review: { publicKey: 'review.pub', spool: { dir: 'review-spool' } },
    upload: { server: CONTROL_PLANE, ca: 'fleet-ca.pem', cert: 'device.crt', key: 'device.key' },
    journal: { path: 'audit.journal' },
    egress: { controlPlane: CONTROL_PLANE, dns: ['10.77.0.53'] },
  };
}
