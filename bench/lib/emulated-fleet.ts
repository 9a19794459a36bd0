/**
 * Emulated TPM devices for the control-plane benchmarks: software keys in TPM shapes (TPM2B_PUBLIC
 * areas with the attributes a real EK, AK and binding key carry), enrolled through the server's
 * full TPM protocol, and a small HTTPS client. The verifier's work is the same as for a real TPM;
 * what is emulated is the device side (no tpm2-tools, no swtpm round trips), so the figures are
 * the server's.
 */
import {
  constants,
  createDecipheriv,
  createHmac,
  generateKeyPair,
  generateKeyPairSync,
  privateDecrypt,
  sign,
  type KeyObject,
} from 'node:crypto';
import { Agent, request } from 'node:https';
import { promisify } from 'node:util';
import { performance } from 'node:perf_hooks';
import { kdfa, parseCredentialBlob, ekPublicKeyHash, protocol } from '../../src/attest/index.ts';
import { createCsr, generateP256, privateKeyToPkcs8Pem, x509 } from '../../src/pki/index.ts';
import { TpmWriter, parseTpm2bPublic, objectName } from '../../src/tpm/index.ts';

export function tpm2bPublicRsa(publicKey: KeyObject, attributes: number, signing: boolean): Buffer {
  const n = Buffer.from(publicKey.export({ format: 'jwk' }).n!, 'base64url');
  const w = new TpmWriter().u16(0x0001).u16(0x000b).u32(attributes).tpm2b(Buffer.alloc(0));
  if (signing) w.u16(0x0010).u16(0x0014).u16(0x000b);
  else w.u16(0x0006).u16(128).u16(0x0043).u16(0x0010);
  return new TpmWriter().tpm2b(w.u16(2048).u32(0).tpm2b(n).toBuffer()).toBuffer();
}

const EK_ATTRS = 0x000300b2;
const AK_ATTRS = 0x00050072; // fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|restricted|sign
const BINDING_ATTRS = 0x00020032; // fixedTPM|fixedParent|sensitiveDataOrigin|decrypt

/**
 * An attestation key as tpm2_createak makes it: RSA-2048 with RSASSA-SHA256 (its default), or
 * ECC P-256 with ECDSA-SHA256 (`-G ecc`).
 */
export interface EmulatedAk {
  kind: AkKind;
  privateKey: KeyObject;
  public: Buffer;
  name: Buffer;
}

export type AkKind = 'rsa' | 'ecc';

/** TPM2B_PUBLIC of a P-256 restricted ECDSA-SHA256 signing key (Part 2, 12.2.3.6 and 11.2.5.6). */
function tpm2bPublicEccSigning(publicKey: KeyObject, attributes: number): Buffer {
  const jwk = publicKey.export({ format: 'jwk' });
  const t = new TpmWriter().u16(0x0023).u16(0x000b).u32(attributes).tpm2b(Buffer.alloc(0));
  t.u16(0x0010).u16(0x0018).u16(0x000b).u16(0x0003).u16(0x0010); // symmetric NULL, ECDSA-SHA256, NIST P-256, kdf NULL
  t.tpm2b(Buffer.from(jwk.x!, 'base64url')).tpm2b(Buffer.from(jwk.y!, 'base64url'));
  return new TpmWriter().tpm2b(t.toBuffer()).toBuffer();
}

export interface EmulatedDevice {
  ekPrivate: KeyObject;
  ak: EmulatedAk;
  body: Omit<protocol.TpmEnrollStart, 'nonce' | 'csr'>;
  ekHash: string;
}

export interface BenchVendor {
  name: string;
  keys: Awaited<ReturnType<typeof generateP256>>;
}

/** TPMT_SIGNATURE (Part 2, 11.3.4) over TPMS_ATTEST bytes: RSASSA or ECDSA with SHA-256, by the AK's kind. */
export function signAttestation(ak: EmulatedAk, attest: Buffer): Buffer {
  if (ak.kind === 'ecc') {
    const rs = sign('sha256', attest, { key: ak.privateKey, dsaEncoding: 'ieee-p1363' });
    return new TpmWriter().u16(0x0018).u16(0x000b).tpm2b(rs.subarray(0, 32)).tpm2b(rs.subarray(32)).toBuffer();
  }
  return new TpmWriter()
    .u16(0x0014)
    .u16(0x000b)
    .tpm2b(sign('sha256', attest, ak.privateKey))
    .toBuffer();
}

const generateKeyPairAsync = promisify(generateKeyPair);

/** Key generation on libuv's thread pool: a fleet's RSA keys are made on every core at once. */
const generateRsa2048 = () => generateKeyPairAsync('rsa', { modulusLength: 2048 });

async function makeAk(kind: AkKind): Promise<EmulatedAk> {
  const pair = kind === 'ecc' ? await generateKeyPairAsync('ec', { namedCurve: 'P-256' }) : await generateRsa2048();
  const pub =
    kind === 'ecc' ? tpm2bPublicEccSigning(pair.publicKey, AK_ATTRS) : tpm2bPublicRsa(pair.publicKey, AK_ATTRS, true);
  return { kind, privateKey: pair.privateKey, public: pub, name: objectName(parseTpm2bPublic(pub)) };
}

/** TPMS_ATTEST for TPM2_Certify (Part 2, 10.12.12) of the binding key, signed by the AK. */
function certifyBinding(ak: EmulatedAk, bindingName: Buffer): { attest: Buffer; signature: Buffer } {
  const attest = new TpmWriter()
    .u32(0xff544347)
    .u16(0x8017)
    .tpm2b(ak.name)
    .tpm2b(Buffer.alloc(0))
    .u32(0)
    .u32(1000)
    .u32(1)
    .u32(0)
    .u8(1)
    .u32(0)
    .u32(0)
    .tpm2b(bindingName)
    .tpm2b(bindingName)
    .toBuffer();
  return { attest, signature: signAttestation(ak, attest) };
}

/**
 * `n` devices, each with its own RSA-2048 EK and an EK certificate from the bench vendor CA; the
 * AKs (and one binding key) are shared in groups of `devicesPerAk` (1: one AK per device).
 */
export async function makeDevices(
  n: number,
  vendor: BenchVendor,
  devicesPerAk = n,
  akKind: AkKind = 'rsa',
): Promise<EmulatedDevice[]> {
  const binding = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const aks = await Promise.all(Array.from({ length: Math.ceil(n / devicesPerAk) }, () => makeAk(akKind)));
  const eks = await Promise.all(Array.from({ length: n }, generateRsa2048));
  const bindingPublic = tpm2bPublicRsa(binding.publicKey, BINDING_ATTRS, false);
  const bindingName = objectName(parseTpm2bPublic(bindingPublic));
  const devices: EmulatedDevice[] = [];
  let ak = aks[0]!;
  let certify = certifyBinding(ak, bindingName);
  for (let i = 0; i < n; i++) {
    if (i > 0 && i % devicesPerAk === 0) {
      ak = aks[i / devicesPerAk]!;
      certify = certifyBinding(ak, bindingName);
    }
    const ek = eks[i]!;
    const ekPublic = tpm2bPublicRsa(ek.publicKey, EK_ATTRS, false);
    const cert = await x509.X509CertificateGenerator.create({
      subject: '',
      issuer: vendor.name,
      publicKey: await x509.PublicKey.create(ek.publicKey.export({ type: 'spki', format: 'der' })),
      signingKey: vendor.keys.privateKey,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      notAfter: new Date('9999-12-31T23:59:59Z'),
      extensions: [new x509.BasicConstraintsExtension(false, undefined, true)],
    });
    devices.push({
      ekPrivate: ek.privateKey,
      ak,
      ekHash: ekPublicKeyHash(parseTpm2bPublic(ekPublic)),
      body: {
        keyProvider: 'tpm',
        ekCertificate: Buffer.from(cert.rawData).toString('base64'),
        ekPublic: ekPublic.toString('base64'),
        akPublic: ak.public.toString('base64'),
        bindingPublic: bindingPublic.toString('base64'),
        certifyInfo: certify.attest.toString('base64'),
        certifySignature: certify.signature.toString('base64'),
      },
    });
  }
  return devices;
}

/** A bench "TPM vendor" CA; its certificate goes into the server's ek-roots. */
export async function makeBenchVendor(): Promise<BenchVendor & { certPem: string }> {
  const keys = await generateP256();
  const name = 'CN=Bench TPM Vendor EK CA';
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name,
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    notAfter: new Date(Date.now() + 365 * 86400e3),
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  return { name, keys, certPem: cert.toString('pem') };
}

/** TPM2_ActivateCredential in software (Part 1, 24): the inverse of makeCredential. */
function activate(ekPrivate: KeyObject, akName: Buffer, blob: Buffer): Buffer {
  const p = parseCredentialBlob(blob);
  const seed = privateDecrypt(
    {
      key: ekPrivate,
      padding: constants.RSA_PKCS1_OAEP_PADDING,
      oaepHash: 'sha256',
      oaepLabel: Buffer.from('IDENTITY\0', 'latin1'),
    },
    p.encSecret,
  );
  const hmac = createHmac('sha256', kdfa('sha256', seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), 256))
    .update(p.encIdentity)
    .update(akName)
    .digest();
  if (!hmac.equals(p.integrityHmac)) throw new Error('integrity check failed');
  const d = createDecipheriv(
    'aes-128-cfb',
    kdfa('sha256', seed, 'STORAGE', akName, Buffer.alloc(0), 128),
    Buffer.alloc(16),
  );
  const plain = Buffer.concat([d.update(p.encIdentity), d.final()]);
  return plain.subarray(2, 2 + plain.readUInt16BE(0));
}

// ---- HTTP ----

export interface Res {
  status: number;
  body: unknown;
}

export function call(
  agent: Agent,
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Res> {
  // A Buffer is JSON already encoded (a body assembled from parts made once).
  const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, base),
      {
        method,
        agent,
        headers: {
          ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
          ...headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on('error', reject);
    // A stuck exchange fails the run with its path instead of hanging it.
    req.setTimeout(120_000, () => req.destroy(new Error(`${method} ${path}: no answer within 120 s`)));
    if (payload) req.write(payload);
    req.end();
  });
}

export function must(r: Res, what: string): Record<string, unknown> {
  if (r.status < 200 || r.status >= 300) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as Record<string, unknown>;
}

export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/**
 * A keep-alive mutual-TLS agent for device `i`. Devices connect from loopback addresses
 * 127.0.0.2-127.0.0.251 in turn, as a fleet comes from many addresses: the server closes
 * connections beyond its per-address cap (64) at once.
 */
export function deviceAgent(device: { cert: string; key: string }, caPem: string, i: number): Agent {
  return new Agent({
    keepAlive: true,
    maxSockets: 1,
    ca: caPem,
    cert: device.cert,
    key: device.key,
    minVersion: 'TLSv1.3',
    localAddress: `127.0.0.${2 + (i % 250)}`,
  });
}

export interface EnrolledDevice {
  id: string;
  cert: string;
  key: string;
}

/**
 * Enroll every device through the full protocol (nonce, start, MakeCredential answered by the
 * emulated EK, finish, auto-approval, certificate fetch), `concurrency` at a time; the EK hashes
 * must be in the server's auto-approve.txt. Returns the credentials and each enrollment's latency.
 */
export async function enrollAll(
  devices: EmulatedDevice[],
  url: string,
  caPem: string,
  concurrency: number,
): Promise<{ enrolled: EnrolledDevice[]; latencies: number[]; seconds: number }> {
  const enrolled: EnrolledDevice[] = [];
  const csrKeys = await Promise.all(devices.map(() => generateP256()));
  const csrs = await Promise.all(csrKeys.map((k) => createCsr(k, 'bench')));
  let next = 0;
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: caPem, minVersion: 'TLSv1.3' });
      for (;;) {
        const i = next++;
        if (i >= devices.length) break;
        const d = devices[i]!;
        const t = performance.now();
        const nonce = must(await call(agent, url, 'POST', '/v1/enroll/nonce'), 'nonce').nonce as string;
        const ch = must(
          await call(agent, url, 'POST', '/v1/enroll/start', { ...d.body, nonce, csr: csrs[i] }),
          'start',
        ) as unknown as protocol.ChallengeResponse;
        const credential = activate(d.ekPrivate, d.ak.name, Buffer.from(ch.credentialBlob, 'base64')).toString(
          'base64',
        );
        const fin = must(
          await call(agent, url, 'POST', '/v1/enroll/finish', { challengeId: ch.challengeId, credential }),
          'finish',
        ) as unknown as protocol.EnrollFinished;
        if (fin.status !== 'approved') throw new Error('not auto-approved');
        const cert = must(
          await call(agent, url, 'GET', `/v1/enroll/${fin.deviceId}/certificate`, undefined, {
            'x-edgeguard-poll-token': fin.pollToken,
          }),
          'certificate',
        ) as unknown as protocol.CertificateResponse;
        latencies.push(performance.now() - t);
        enrolled[i] = {
          id: fin.deviceId,
          cert: cert.certificateChain,
          key: await privateKeyToPkcs8Pem(csrKeys[i]!.privateKey),
        };
      }
      agent.destroy();
    }),
  );
  latencies.sort((a, b) => a - b);
  return { enrolled, latencies, seconds: (performance.now() - t0) / 1000 };
}
