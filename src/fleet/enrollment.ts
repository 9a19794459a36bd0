/**
 * The device side of enrollment, used by `edgeguard agent enroll` (protocol: attest/protocol.ts). The
 * device opens every connection (it may sit behind NAT); the server is authenticated by the pinned
 * fleet CA from the first request on, and once a certificate is issued the device talks to the
 * control plane only over mutual TLS.
 *
 *   1. a TLS key pair, its private half wrapped to the identity key (tls-key.ts)
 *   2. POST /v1/enroll/nonce
 *   3. tpm: POST /v1/enroll/start with the EK/AK/binding evidence from `device init` and a CSR;
 *      TPM2_ActivateCredential on the challenge; POST /v1/enroll/finish with the credential
 *      software: POST /v1/enroll/start with a CSR that signs the nonce
 *   4. poll GET /v1/enroll/{id}/certificate with backoff until an operator approves
 *   5. check the certificate (our key, chains to the pinned CA), store it, call /v1/device/self
 *
 * State lives in DEVICE_DIR/fleet/ (docs/formats.md); an interrupted enrollment resumes polling.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdir, readFile, writeFile, rename } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { EdgeguardError, fsError, FILE_CAPS, readBoundedText } from '../errors/index.ts';
import {
  DEVICE_FILES,
  openDeviceKeyStore,
  openDeviceIdentityStore,
  parseCertifyEvidence,
  readDeviceFile,
  type KeyStore,
} from '../keystore/index.ts';
import { TpmClient } from '../tpm/index.ts';
import { protocol } from '../attest/index.ts';
import { renewalDue, x509 } from '../pki/index.ts';
import { parseAnswer } from './answer.ts';
import { FleetClient, serverError } from './client.ts';
import type { EgressDialer } from './egress-dialer.ts';
import { createWrappedTlsKey, loadDeviceTlsKey } from './tls-key.ts';

export const FLEET_SUBDIR = 'fleet';
export const FLEET_FILES = {
  state: 'enrollment.json',
  tlsKey: 'tls-key.json',
  certificate: 'device.crt',
  ca: 'fleet-ca.pem',
} as const;

const EnrollmentState = z.strictObject({
  type: z.literal('edgeguard-enrollment'),
  version: z.literal(1),
  server: z.string(),
  deviceId: z.string().regex(/^dev-[0-9a-f]{16}$/),
  keyProvider: z.enum(['tpm', 'software']),
  pollToken: z.string(),
  status: z.enum(['pending', 'approved']),
});
type EnrollmentState = z.infer<typeof EnrollmentState>;

export interface PollOptions {
  initialMs?: number;
  maxMs?: number;
  /** Give up after this long (default 10 minutes); the enrollment resumes on the next run. */
  timeoutMs?: number;
}

export interface EnrollOptions {
  deviceDir: string;
  server: string;
  /** The fleet root CA, PEM: pinned from the first request on. */
  caPem: string;
  label?: string;
  /** Override the TCTI recorded in device.json. */
  tcti?: string;
  poll?: PollOptions;
  /** Progress sentences (for the CLI's stderr). */
  onProgress?: (message: string) => void;
  /** The device's egress allowlist (agent.yaml `egress:`): the server must be on it. */
  dialer?: EgressDialer | undefined;
}

export interface EnrollResult {
  deviceId: string;
  keyProvider: 'tpm' | 'software';
  certificatePath: string;
  notAfter: string;
  /** Whether this run resumed an enrollment started earlier. */
  resumed: boolean;
}

async function readText(path: string, what: string): Promise<string> {
  return await readBoundedText(path, FILE_CAPS.certificate, `read ${what}`);
}

/** Write through a temporary file and rename, so a reader never sees half a file. */
export async function writeAtomic(path: string, text: string, mode = 0o644): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, text, { mode }).catch((e) => {
    throw fsError(e, tmp, 'write');
  });
  await rename(tmp, path);
}

function b64file(buf: Buffer): string {
  return buf.toString('base64');
}

/** Check what the server returned: our key, issued under the pinned root. */
async function checkIssued(chainPem: string, keyPem: string, caPem: string): Promise<x509.X509Certificate> {
  const blocks = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length < 2)
    throw new EdgeguardError('EG_PKI', 'the server returned a certificate without its issuing CA.');
  const leaf = new x509.X509Certificate(blocks[0]!);
  const issuing = new x509.X509Certificate(blocks[1]!);
  const root = new x509.X509Certificate(caPem);
  const ourSpki = createPublicKey(keyPem).export({ type: 'spki', format: 'der' });
  if (!Buffer.from(leaf.publicKey.rawData).equals(ourSpki))
    throw new EdgeguardError('EG_PKI', 'the server returned a certificate for another key; refusing it.');
  const ok =
    (await leaf.verify({ publicKey: issuing.publicKey, signatureOnly: true })) &&
    (await issuing.verify({ publicKey: root.publicKey, signatureOnly: true }));
  if (!ok)
    throw new EdgeguardError('EG_PKI', 'the returned certificate does not chain to the pinned fleet CA; refusing it.');
  return leaf;
}

export async function enrollDevice(opts: EnrollOptions): Promise<EnrollResult> {
  const dir = resolve(opts.deviceDir);
  const fleetDir = join(dir, FLEET_SUBDIR);
  const progress = opts.onProgress ?? (() => undefined);
  const device = await readDeviceFile(dir);
  const store = await openDeviceKeyStore(dir, opts.tcti ? { tcti: opts.tcti } : {});
  const identity = (await openDeviceIdentityStore(dir, opts.tcti ? { tcti: opts.tcti } : {}))!;
  await mkdir(fleetDir, { recursive: true, mode: 0o700 });
  const statePath = join(fleetDir, FLEET_FILES.state);
  const keyPath = join(fleetDir, FLEET_FILES.tlsKey);
  const certPath = join(fleetDir, FLEET_FILES.certificate);
  if (existsSync(certPath)) {
    throw new EdgeguardError(
      'EG_EXISTS',
      `${dir} is already enrolled (${certPath}); the agent renews its certificate by itself. To enroll again, pass --reenroll: the journal is forwarded first and ${fleetDir} moved aside, never deleted.`,
    );
  }
  new x509.X509Certificate(opts.caPem); // a PEM certificate, or throw now
  const client = new FleetClient({ server: opts.server, ca: opts.caPem, dialer: opts.dialer });
  try {
    let state: EnrollmentState | undefined;
    let resumed = false;
    if (existsSync(statePath)) {
      state = EnrollmentState.parse(JSON.parse(await readText(statePath, 'the enrollment state')));
      resumed = true;
      progress(`resuming enrollment of ${state.deviceId}`);
    } else {
      if (existsSync(keyPath)) {
        // An attempt that failed before the server recorded the device: its key was never certified.
        await rename(keyPath, `${keyPath}.abandoned-${Date.now()}`);
      }
      const keys = await createWrappedTlsKey(identity, keyPath);
      const nonce = parseAnswer(
        protocol.NonceResponse,
        (await client.call('POST', '/v1/enroll/nonce')).body,
        'enrollment nonce',
      ).nonce;
      let finished: protocol.EnrollFinished;
      if (device.provider === 'software') {
        const csr = await x509.Pkcs10CertificateRequestGenerator.create({
          name: 'CN=edgeguard-device',
          keys,
          signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
          attributes: [new x509.ChallengePasswordAttribute(nonce)],
        });
        progress('software key store: enrolling as a software-bound device');
        const body: protocol.SoftwareEnrollStart = {
          keyProvider: 'software',
          nonce,
          csr: csr.toString('pem'),
          ...(opts.label ? { label: opts.label } : {}),
        };
        finished = parseAnswer(
          protocol.EnrollFinished,
          (await client.call('POST', '/v1/enroll/start', body)).body,
          'enrollment',
        );
      } else {
        finished = await tpmExchange(client, dir, store, keys, nonce, opts, progress);
      }
      state = {
        type: 'edgeguard-enrollment',
        version: 1,
        server: opts.server,
        deviceId: finished.deviceId,
        keyProvider: finished.keyProvider,
        pollToken: finished.pollToken,
        status: finished.status,
      };
      await writeAtomic(statePath, JSON.stringify(state, null, 2) + '\n', 0o600);
      await writeAtomic(join(fleetDir, FLEET_FILES.ca), opts.caPem);
      progress(`enrolled as ${finished.deviceId} (${finished.status})`);
    }

    const cert = await pollForCertificate(client, state, opts.poll ?? {}, progress);
    const keyPem = await loadDeviceTlsKey({ binding: store, identity }, keyPath);
    const leaf = await checkIssued(cert.certificateChain, keyPem, opts.caPem);
    await writeAtomic(certPath, cert.certificateChain);
    await writeAtomic(statePath, JSON.stringify({ ...state, status: 'approved' }, null, 2) + '\n', 0o600);

    // From here on: mutual TLS only.
    const mtls = new FleetClient({
      server: opts.server,
      ca: opts.caPem,
      cert: cert.certificateChain,
      key: keyPem,
      dialer: opts.dialer,
    });
    try {
      await mtls.call('GET', '/v1/device/self');
    } finally {
      mtls.close();
    }
    return {
      deviceId: state.deviceId,
      keyProvider: state.keyProvider,
      certificatePath: certPath,
      notAfter: leaf.notAfter.toISOString(),
      resumed,
    };
  } finally {
    client.close();
  }
}

async function tpmExchange(
  client: FleetClient,
  dir: string,
  store: KeyStore,
  keys: Awaited<ReturnType<typeof createWrappedTlsKey>>,
  nonce: string,
  opts: EnrollOptions,
  progress: (m: string) => void,
): Promise<protocol.EnrollFinished> {
  const evidence = parseCertifyEvidence(await readText(join(dir, DEVICE_FILES.certify), 'the certify evidence'));
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=edgeguard-device',
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  const body: protocol.TpmEnrollStart = {
    keyProvider: 'tpm',
    nonce,
    ...(evidence.ekCertificate ? { ekCertificate: evidence.ekCertificate } : {}),
    ekPublic: evidence.ekPublic,
    akPublic: evidence.akPublic,
    bindingPublic: evidence.bindingPublic,
    certifyInfo: evidence.attest,
    certifySignature: evidence.signature,
    csr: csr.toString('pem'),
    ...(opts.label ? { label: opts.label } : {}),
  };
  progress('sending TPM evidence (EK, AK, binding key certification)');
  const challenge = parseAnswer(
    protocol.ChallengeResponse,
    (await client.call('POST', '/v1/enroll/start', body)).body,
    'enrollment challenge',
  );
  const tcti = store.posture.tpm?.tcti;
  if (!tcti)
    throw new EdgeguardError('EG_TPM_UNAVAILABLE', 'the device has no TPM TCTI; was it initialised with --tpm?');
  progress('answering the credential challenge with TPM2_ActivateCredential');
  const ak = {
    public: await readFile(join(dir, DEVICE_FILES.akTpmPublic)),
    private: await readFile(join(dir, DEVICE_FILES.akTpmPrivate)),
  };
  const credential = await new TpmClient({ tcti }).attestation.activateCredential(
    ak,
    Buffer.from(challenge.credentialBlob, 'base64'),
  );
  try {
    const finish: protocol.EnrollFinish = { challengeId: challenge.challengeId, credential: b64file(credential) };
    return parseAnswer(
      protocol.EnrollFinished,
      (await client.call('POST', '/v1/enroll/finish', finish)).body,
      'enrollment',
    );
  } finally {
    credential.fill(0);
  }
}

async function pollForCertificate(
  client: FleetClient,
  state: EnrollmentState,
  p: PollOptions,
  progress: (m: string) => void,
): Promise<protocol.CertificateResponse> {
  const initial = p.initialMs ?? 1000;
  const max = p.maxMs ?? 30_000;
  const deadline = Date.now() + (p.timeoutMs ?? 10 * 60_000);
  let wait = initial;
  let announced = false;
  for (;;) {
    const r = await client.send<protocol.CertificateResponse | { status: string }>(
      'GET',
      `/v1/enroll/${state.deviceId}/certificate`,
      undefined,
      { 'x-edgeguard-poll-token': state.pollToken },
    );
    if (r.status === 200) return parseAnswer(protocol.CertificateResponse, r.body, 'certificate');
    if (r.status === 429) {
      wait = Math.min(max, wait * 2);
    } else if (r.status !== 202) {
      throw serverError(r);
    }
    if (!announced) {
      progress(`waiting for an operator to approve ${state.deviceId} (edgeguard device approve ${state.deviceId})`);
      announced = true;
    }
    if (Date.now() + wait > deadline) {
      throw new EdgeguardError(
        'EG_ENROLL',
        `device ${state.deviceId} is still pending approval; run \`edgeguard agent enroll\` again to keep waiting.`,
        { details: { deviceId: state.deviceId } },
      );
    }
    // Backoff with jitter: many devices enrolling at once must not poll in lockstep.
    await sleep(wait * (0.8 + Math.random() * 0.4));
    wait = Math.min(max, Math.round(wait * 1.6));
  }
}

export interface DeviceCredential {
  server: string;
  deviceId: string;
  caPem: string;
  certPem: string;
  /** In memory only. */
  keyPem: string;
  certificate: x509.X509Certificate;
}

/** An enrolled device directory's enrollment state (no key is opened); EG_NOT_FOUND before enrollment. */
async function enrollmentState(deviceDir: string): Promise<z.infer<typeof EnrollmentState>> {
  const dir = resolve(deviceDir);
  const fleetDir = join(dir, FLEET_SUBDIR);
  if (!existsSync(join(fleetDir, FLEET_FILES.certificate)))
    throw new EdgeguardError(
      'EG_NOT_FOUND',
      `${dir} is not enrolled yet; run \`edgeguard agent enroll --device ${deviceDir} ...\`.`,
    );
  return EnrollmentState.parse(JSON.parse(await readText(join(fleetDir, FLEET_FILES.state), 'the enrollment state')));
}

/** The control plane an enrolled device belongs to, read without opening its keys (the TPM is not touched). */
export async function enrolledServer(deviceDir: string): Promise<string> {
  return (await enrollmentState(deviceDir)).server;
}

/** Load an enrolled device's mTLS credential (unwrapping the TLS key through the key store). */
export async function loadDeviceCredential(deviceDir: string, opts: { tcti?: string } = {}): Promise<DeviceCredential> {
  const dir = resolve(deviceDir);
  const fleetDir = join(dir, FLEET_SUBDIR);
  const certPath = join(fleetDir, FLEET_FILES.certificate);
  const state = await enrollmentState(deviceDir);
  const tcti = opts.tcti ? { tcti: opts.tcti } : {};
  const stores = {
    binding: await openDeviceKeyStore(dir, tcti),
    identity: (await openDeviceIdentityStore(dir, tcti))!,
  };
  const certPem = await readText(certPath, 'the device certificate');
  const caPem = await readText(join(fleetDir, FLEET_FILES.ca), 'the fleet CA');
  const keyPem = await loadDeviceTlsKey(stores, join(fleetDir, FLEET_FILES.tlsKey));
  return {
    server: state.server,
    deviceId: state.deviceId,
    caPem,
    certPem,
    keyPem,
    certificate: new x509.X509Certificate(certPem),
  };
}

/** An mTLS client for an enrolled device (fleet CA pinned). */
export function deviceClient(cred: DeviceCredential): FleetClient {
  return new FleetClient({ server: cred.server, ca: cred.caPem, cert: cred.certPem, key: cred.keyPem });
}

/**
 * Renew the device certificate when two thirds of its lifetime have passed (same key: the
 * server refuses a renewal for another key). Returns whether it renewed.
 */
export async function renewIfDue(
  deviceDir: string,
  opts: { tcti?: string; now?: Date; force?: boolean } = {},
): Promise<{ renewed: boolean; notAfter: string }> {
  const cred = await loadDeviceCredential(deviceDir, opts);
  if (!opts.force && !renewalDue(cred.certificate.notBefore, cred.certificate.notAfter, opts.now)) {
    return { renewed: false, notAfter: cred.certificate.notAfter.toISOString() };
  }
  const client = deviceClient(cred);
  try {
    const r = await requestRenewal(client, cred);
    await writeAtomic(join(resolve(deviceDir), FLEET_SUBDIR, FLEET_FILES.certificate), r.chainPem);
    return { renewed: true, notAfter: r.certificate.notAfter.toISOString() };
  } finally {
    client.close();
  }
}

/**
 * POST /v1/device/renew over `client` (mutual TLS with the current certificate): a CSR for the
 * same key; the answer must be for our key and chain to the pinned fleet CA.
 */
export async function requestRenewal(
  client: FleetClient,
  cred: { deviceId: string; keyPem: string; caPem: string },
): Promise<{ chainPem: string; certificate: x509.X509Certificate }> {
  const keys = {
    privateKey: await globalThis.crypto.subtle.importKey(
      'pkcs8',
      createPrivateKeyDer(cred.keyPem),
      { name: 'ECDSA', namedCurve: 'P-256' },
      false,
      ['sign'],
    ),
    publicKey: await globalThis.crypto.subtle.importKey(
      'spki',
      createPublicKey(cred.keyPem).export({ type: 'spki', format: 'der' }),
      { name: 'ECDSA', namedCurve: 'P-256' },
      true,
      ['verify'],
    ),
  };
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cred.deviceId}`,
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  const r = parseAnswer(
    protocol.CertificateResponse,
    (await client.call('POST', '/v1/device/renew', { csr: csr.toString('pem') })).body,
    'renewal',
  );
  const certificate = await checkIssued(r.certificateChain, cred.keyPem, cred.caPem);
  return { chainPem: r.certificateChain, certificate };
}

function createPrivateKeyDer(pem: string): Buffer {
  // PKCS#8 whatever the PEM holds (a key file may be SEC1 "EC PRIVATE KEY").
  return createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
}
