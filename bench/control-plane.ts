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
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ekPublicKeyHash } from '../src/attest/index.ts';
import { parseTpm2bPublic, missingSwtpmBinaries, startSwtpm } from '../src/tpm/index.ts';
import { initDevice } from '../src/keystore/index.ts';
import { enrollDevice } from '../src/fleet/index.ts';
import { call, deviceAgent, enrollAll, makeBenchVendor, makeDevices, percentile } from './lib/emulated-fleet.ts';
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
    const vendor = await makeBenchVendor();
    writeFileSync(join(dataDir, 'ek-roots', 'vendor.pem'), vendor.certPem);
    process.stderr.write(`preparing ${DEVICES} emulated TPM devices (RSA-2048 EKs)...\n`);
    const devices = await makeDevices(DEVICES, vendor);
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
    const {
      enrolled: creds,
      latencies: enrollLat,
      seconds: enrollSeconds,
    } = await enrollAll(devices, url, caPem, ENROLL_CONCURRENCY);
    const enrollRate = devices.length / enrollSeconds;

    // ---- requests ----
    const agents = Array.from({ length: CLIENTS }, (_, i) => deviceAgent(creds[i % creds.length]!, caPem, i));
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
