/**
 * Control-plane benchmark: enrollments per second (the full TPM protocol: nonce, start with EK
 * certificate + AK + certified binding key + CSR, MakeCredential, ActivateCredential answer,
 * finish, auto-approval, certificate fetch) and mutual-TLS requests per second to a device-only
 * endpoint (GET /v1/device/self: TLS client certificate + per-request revocation and device-status
 * lookup + a last-seen update) with 100 concurrent keep-alive clients, p50/p99 latency.
 * Baseline in the same run: the same 100 clients on GET /healthz (same TLS, no authorization, one
 * trivial query).
 *
 * The server runs as `edgeguard server` in its own process. The devices are emulated in software
 * (unique RSA-2048 EK per device with an EK certificate from a bench "vendor" CA in ek-roots; one
 * shared AK and binding key; TPM2_Certify evidence and ActivateCredential computed with the
 * software keys) so that the figure is the server's, not swtpm's: a real TPM spends ~1-2 s on its
 * side of one enrollment (see the swtpm figure, measured at the end on one real enrollment).
 *
 *   node --import tsx bench/control-plane.ts [--devices 300] [--seconds 10] [--db postgres://...] [--quick]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  constants,
  createDecipheriv,
  createHmac,
  generateKeyPairSync,
  privateDecrypt,
  randomBytes,
  sign,
  type KeyObject,
} from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { kdfa, parseCredentialBlob, ekPublicKeyHash, protocol } from '../src/attest/index.ts';
import { createCsr, generateP256, privateKeyToPkcs8Pem, x509 } from '../src/pki/index.ts';
import { TpmWriter, parseTpm2bPublic, objectName, missingSwtpmBinaries, startSwtpm } from '../src/tpm/index.ts';
import { initDevice } from '../src/keystore/index.ts';
import { enrollDevice } from '../src/fleet/index.ts';
import { machine } from './lib/machine.ts';

const args = process.argv.slice(2);
const opt = (name: string, def: string) => (args.includes(name) ? (args[args.indexOf(name) + 1] ?? def) : def);
const quick = args.includes('--quick');
const DEVICES = Number(opt('--devices', quick ? '120' : '300'));
const SECONDS = Number(opt('--seconds', quick ? '3' : '10'));
const DB = args.includes('--db') ? opt('--db', '') : undefined;
const CLIENTS = 100;
const ENROLL_CONCURRENCY = 16;
const CLI = join(import.meta.dirname, '..', 'bin', 'edgeguard.js');

// ---- emulated TPM (bench client side only) ----

function tpm2bPublicRsa(publicKey: KeyObject, attributes: number, signing: boolean): Buffer {
  const n = Buffer.from(publicKey.export({ format: 'jwk' }).n!, 'base64url');
  const w = new TpmWriter().u16(0x0001).u16(0x000b).u32(attributes).tpm2b(Buffer.alloc(0));
  if (signing) w.u16(0x0010).u16(0x0014).u16(0x000b);
  else w.u16(0x0006).u16(128).u16(0x0043).u16(0x0010);
  return new TpmWriter().tpm2b(w.u16(2048).u32(0).tpm2b(n).toBuffer()).toBuffer();
}

const EK_ATTRS = 0x000300b2;
const AK_ATTRS = 0x00050072; // fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|restricted|sign
const BINDING_ATTRS = 0x00020032; // fixedTPM|fixedParent|sensitiveDataOrigin|decrypt

interface EmulatedDevice {
  ekPrivate: KeyObject;
  body: Omit<protocol.TpmEnrollStart, 'nonce' | 'csr'>;
  ekHash: string;
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

async function makeDevices(n: number, vendor: { name: string; keys: Awaited<ReturnType<typeof generateP256>> }) {
  const ak = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const binding = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const akPublic = tpm2bPublicRsa(ak.publicKey, AK_ATTRS, true);
  const bindingPublic = tpm2bPublicRsa(binding.publicKey, BINDING_ATTRS, false);
  const akName = objectName(parseTpm2bPublic(akPublic));
  const bindingName = objectName(parseTpm2bPublic(bindingPublic));
  // TPMS_ATTEST for TPM2_Certify (Part 2, 10.12.12) signed RSASSA-SHA256 by the AK.
  const attest = new TpmWriter()
    .u32(0xff544347)
    .u16(0x8017)
    .tpm2b(akName)
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
  const sig = sign('sha256', attest, ak.privateKey);
  const signature = new TpmWriter().u16(0x0014).u16(0x000b).tpm2b(sig).toBuffer();
  const devices: EmulatedDevice[] = [];
  for (let i = 0; i < n; i++) {
    const ek = generateKeyPairSync('rsa', { modulusLength: 2048 });
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
      ekHash: ekPublicKeyHash(parseTpm2bPublic(ekPublic)),
      body: {
        keyProvider: 'tpm',
        ekCertificate: Buffer.from(cert.rawData).toString('base64'),
        ekPublic: ekPublic.toString('base64'),
        akPublic: akPublic.toString('base64'),
        bindingPublic: bindingPublic.toString('base64'),
        certifyInfo: attest.toString('base64'),
        certifySignature: signature.toString('base64'),
      },
    });
  }
  return { devices, akName };
}

// ---- HTTP ----

interface Res {
  status: number;
  body: unknown;
}

function call(
  agent: Agent,
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Res> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
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
    if (payload) req.write(payload);
    req.end();
  });
}

function must(r: Res, what: string): Record<string, unknown> {
  if (r.status < 200 || r.status >= 300) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as Record<string, unknown>;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function load(
  agents: Agent[],
  base: string,
  path: string,
  seconds: number,
): Promise<{ rps: number; p50: number; p99: number; n: number; errors: number }> {
  const lat: number[] = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    agents.map(async (agent) => {
      while (performance.now() < end) {
        const t = performance.now();
        const r = await call(agent, base, 'GET', path);
        if (r.status !== 200) errors++;
        lat.push(performance.now() - t);
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { rps: lat.length / elapsed, p50: percentile(lat, 50), p99: percentile(lat, 99), n: lat.length, errors };
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'eg-bench-cp-'));
  const dataDir = join(work, 'server');
  mkdirSync(join(dataDir, 'ek-roots'), { recursive: true });
  let server: ChildProcess | undefined;
  let swtpm: Awaited<ReturnType<typeof startSwtpm>> | undefined;
  try {
    process.stderr.write(`machine: ${machine({ load: true })}\n`);
    // A bench "TPM vendor" CA whose certificate goes into ek-roots.
    const vendorKeys = await generateP256();
    const vendorName = 'CN=Bench TPM Vendor EK CA';
    const vendorCert = await x509.X509CertificateGenerator.createSelfSigned({
      name: vendorName,
      keys: vendorKeys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      notAfter: new Date(Date.now() + 365 * 86400e3),
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
    });
    writeFileSync(join(dataDir, 'ek-roots', 'vendor.pem'), vendorCert.toString('pem'));
    process.stderr.write(`preparing ${DEVICES} emulated TPM devices (RSA-2048 EKs)...\n`);
    const { devices, akName } = await makeDevices(DEVICES, { name: vendorName, keys: vendorKeys });
    // Auto-approve every bench EK so that the protocol runs through to the certificate.
    const devicesToApprove = devices.map((d) => d.ekHash);

    // One real swtpm device, prepared now so that its vendor CA is in ek-roots when the server starts.
    const swtpmDevice = join(work, 'swtpm-device');
    if (missingSwtpmBinaries().length === 0 && !quick) {
      swtpm = await startSwtpm();
      copyFileSync(swtpm.ca.rootCertPath, join(dataDir, 'ek-roots', 'swtpm-root.pem'));
      copyFileSync(swtpm.ca.issuerCertPath, join(dataDir, 'ek-roots', 'swtpm-issuer.pem'));
      await initDevice({ dir: swtpmDevice, tcti: swtpm.tcti });
      const evidence = JSON.parse(readFileSync(join(swtpmDevice, 'binding.certify.json'), 'utf8')) as {
        ekPublic: string;
      };
      devicesToApprove.push(ekPublicKeyHash(parseTpm2bPublic(Buffer.from(evidence.ekPublic, 'base64'))));
    }
    writeFileSync(join(dataDir, 'auto-approve.txt'), devicesToApprove.join('\n') + '\n');

    const passphrase = randomBytes(18).toString('base64url');
    const argv = [
      CLI,
      '--json',
      'server',
      '--data',
      dataDir,
      '--listen',
      '127.0.0.1:0',
      '--log-level',
      'error',
      '--enroll-rate',
      '100000000',
    ];
    if (DB) argv.push('--db', DB);
    server = spawn(
      process.execPath,
      [...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF] : []), ...argv],
      { env: { ...process.env, EDGEGUARD_CA_PASSPHRASE: passphrase }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    server.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    for (let i = 0; i < 400 && !out.includes('}'); i++) await new Promise((r) => setTimeout(r, 50));
    const { url } = JSON.parse(out) as { url: string };
    const caPem = readFileSync(join(dataDir, 'fleet-ca.pem'), 'utf8');

    // ---- enrollments ----
    const creds: Array<{ cert: string; key: string }> = [];
    const csrKeys = await Promise.all(devices.map(() => generateP256()));
    const csrs = await Promise.all(csrKeys.map((k) => createCsr(k, 'bench')));
    let next = 0;
    const enrollLat: number[] = [];
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: ENROLL_CONCURRENCY }, async () => {
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
          const credential = activate(d.ekPrivate, akName, Buffer.from(ch.credentialBlob, 'base64')).toString('base64');
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
          enrollLat.push(performance.now() - t);
          creds[i] = { cert: cert.certificateChain, key: await privateKeyToPkcs8Pem(csrKeys[i]!.privateKey) };
        }
        agent.destroy();
      }),
    );
    const enrollSeconds = (performance.now() - t0) / 1000;
    enrollLat.sort((a, b) => a - b);
    const enrollRate = devices.length / enrollSeconds;

    // ---- requests ----
    const agents = Array.from(
      { length: CLIENTS },
      (_, i) =>
        new Agent({
          keepAlive: true,
          maxSockets: 1,
          ca: caPem,
          cert: creds[i % creds.length]!.cert,
          key: creds[i % creds.length]!.key,
          minVersion: 'TLSv1.3',
        }),
    );
    await load(agents, url, '/healthz', 1); // warm-up: handshakes, JIT
    const base = await load(agents, url, '/healthz', SECONDS);
    const mtls = await load(agents, url, '/v1/device/self', SECONDS);
    for (const a of agents) a.destroy();

    // ---- one real swtpm enrollment, for the device-side cost ----
    let swtpmMs: number | undefined;
    if (swtpm) {
      try {
        const t = performance.now();
        await enrollDevice({ deviceDir: swtpmDevice, server: url, caPem, poll: { initialMs: 50 } });
        swtpmMs = performance.now() - t;
      } catch (e) {
        process.stderr.write(`swtpm enrollment failed: ${(e as Error).message}\n`);
      } finally {
        await swtpm.remove();
        swtpm = undefined;
      }
    }

    const db = DB ? 'PostgreSQL' : 'SQLite';
    const lines = [
      `control plane (${db}), server in its own process; machine: ${machine({ load: true })}`,
      `enrollments: ${devices.length} devices, ${ENROLL_CONCURRENCY} concurrent: ${enrollRate.toFixed(1)} enrollments/s (full protocol incl. certificate), latency p50 ${percentile(enrollLat, 50).toFixed(1)} ms, p99 ${percentile(enrollLat, 99).toFixed(1)} ms`,
      `baseline GET /healthz, ${CLIENTS} keep-alive mTLS clients, ${SECONDS}s: ${base.rps.toFixed(0)} req/s, p50 ${base.p50.toFixed(2)} ms, p99 ${base.p99.toFixed(2)} ms (${base.errors} errors)`,
      `device endpoint GET /v1/device/self, ${CLIENTS} keep-alive mTLS clients, ${SECONDS}s: ${mtls.rps.toFixed(0)} req/s, p50 ${mtls.p50.toFixed(2)} ms, p99 ${mtls.p99.toFixed(2)} ms (${mtls.errors} errors)`,
      `ratio: device endpoint / baseline throughput = ${(mtls.rps / base.rps).toFixed(2)}x; one enrollment costs about ${(mtls.rps / enrollRate).toFixed(0)} device requests`,
      ...(swtpmMs !== undefined
        ? [
            `one real enrollment on swtpm (device side: tpm2-tools, ActivateCredential, TLS key wrap/unwrap): ${(swtpmMs / 1000).toFixed(2)} s`,
          ]
        : []),
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    server?.kill('SIGTERM');
    await swtpm?.remove();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
