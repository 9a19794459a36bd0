/**
 * Remote attestation through the control plane's HTTP routes, on a real swtpm and real mTLS: a
 * played boot, quoted by the device's AK over the verifier's nonce and pushed, passes and opens
 * the gate; each tampering fails with its own reason code, is recorded as a verdict and an audit
 * event, and fires the webhook; a device that falls silent beyond the window is untrusted. On
 * SQLite and PostgreSQL.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBootPolicy, formatBootPolicyYaml } from '../../src/attest/index.ts';
import { decodeLogLeaf, type AuditLog } from '../../src/audit/index.ts';
import {
  EV,
  defaultSyntheticBoot,
  parseEventLog,
  playBoot,
  syntheticBootEvents,
  type SyntheticBoot,
} from '../../src/eventlog/index.ts';
import {
  pushAttestationEvidence,
  requestAttestationNonce,
  type AttestationStatus,
  type FleetClient,
  type VerdictResponse,
} from '../../src/fleet/index.ts';
import { controlPlanePlugins, type AttestationServerPlugin } from '../../src/server/index.ts';
import { TPM_ALG, TpmClient, parseTpmsAttest, type EndorsementKeys } from '../../src/tpm/index.ts';
import {
  TPM_SKIP,
  startTestTpm,
  startTestTpmWithAk,
  stopTestTpm,
  type Swtpm,
  type TestTpmWithAk,
} from '../helpers/swtpm.ts';
import { failureCount, refuseAuditWrites } from '../helpers/audit-down.ts';
import { createTempDatabase, type TempDatabase } from '../helpers/postgres.ts';
import { startTestFleet, type TestFleet } from './fleet-helpers.ts';

const BANKS = [TPM_ALG.SHA256];

/** A local receiver for the failure webhook: resolves each expected POST as it arrives. */
function startWebhook(): Promise<{ server: Server; url: string; next(): Promise<Record<string, unknown>> }> {
  const received: Array<Record<string, unknown>> = [];
  const waiting: Array<(b: Record<string, unknown>) => void> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      const w = waiting.shift();
      if (w) w(body);
      else received.push(body);
      res.end('ok');
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        server,
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
        next: () => {
          const b = received.shift();
          return b ? Promise.resolve(b) : new Promise((r) => waiting.push(r));
        },
      }),
    ),
  );
}

for (const backend of ['sqlite', 'postgres'] as const) {
  describe(`attestation through the control plane on swtpm (${backend})`, { skip: TPM_SKIP }, () => {
    let device: TestTpmWithAk;
    let other: TestTpmWithAk;
    let running: Swtpm;
    let tpm: TpmClient;
    let fleet: TestFleet;
    let plugin: AttestationServerPlugin;
    let auditLog: () => AuditLog;
    let webhook: Awaited<ReturnType<typeof startWebhook>>;
    let admin: FleetClient;
    let a: { id: string; client: FleetClient };
    let b: { id: string; client: FleetClient };
    let goldenLog: Buffer;
    let dataDir: string;
    let pgDb: TempDatabase | undefined;

    /** An enrolled device whose record holds `keys`' AK as enrollment writes it (the TPM2B_PUBLIC the device sent). */
    async function enrolledDevice(keys: EndorsementKeys) {
      const cred = await fleet.deviceCredential();
      await fleet.server.ctx.store.db
        .updateTable('devices')
        .set({ ak_public: Buffer.from(keys.ak.public).toString('base64') })
        .where('id', '=', cred.deviceId)
        .execute();
      return { id: cred.deviceId, client: fleet.client(cred) };
    }

    /** Nonce from the server (asked by `asker`), quote by `keys` on `by`, pushed by `pusher`. */
    async function attest(
      log: Buffer,
      o: { asker?: FleetClient; pusher?: FleetClient; by?: TpmClient; keys?: EndorsementKeys } = {},
    ) {
      const issued = await requestAttestationNonce(o.asker ?? a.client);
      return { issued, ...(await pushOver(issued, log, o)) };
    }

    /** Quote over `issued` (a nonce asked or carried by a verdict) by `keys` on `by`, pushed by `pusher`. */
    async function pushOver(
      issued: { nonce: string; pcrs: string },
      log: Buffer,
      o: {
        pusher?: FleetClient;
        by?: TpmClient;
        keys?: EndorsementKeys;
        askNextNonce?: boolean;
        binary?: boolean;
      } = {},
    ) {
      const q = await (o.by ?? tpm).attestation.quote(
        (o.keys ?? device.keys).ak,
        issued.pcrs,
        Buffer.from(issued.nonce, 'hex'),
      );
      const evidence = { quote: q.attest, signature: q.signature, eventLog: log };
      const verdict = await pushAttestationEvidence(o.pusher ?? a.client, issued.nonce, evidence, {
        askNextNonce: o.askNextNonce ?? false,
        binary: o.binary ?? false,
      });
      return { evidence, verdict };
    }

    /**
     * Reboot the device: TPM2_Shutdown(CLEAR) as an OS does, power off, on (Startup(CLEAR): a TPM
     * Reset, resetCount + 1), play `boot`. `whileOff` sees the TPM's state directory while it is off.
     */
    async function reboot(boot: SyntheticBoot, whileOff?: (stateDir: string) => void): Promise<Buffer> {
      execFileSync('tpm2_shutdown', ['-c'], { env: { ...process.env, TPM2TOOLS_TCTI: running.tcti } });
      await running.stop();
      whileOff?.(device.tpm.stateDir);
      running = await startTestTpm({ stateDir: device.tpm.stateDir, ca: device.tpm.ca });
      tpm = new TpmClient({ tcti: running.tcti });
      return playBoot(tpm, BANKS, syntheticBootEvents(boot, BANKS));
    }

    const codes = (v: { reasons: Array<{ code: string }> }) => [...new Set(v.reasons.map((r) => r.code))];

    async function auditEvents() {
      const leaves = await auditLog().getEntries(0, (await auditLog().publishCheckpoint()).size);
      return leaves.map((l) => decodeLogLeaf(Buffer.from(l, 'utf8')).event);
    }

    /** The details of the last attestation.result event about device a. */
    async function lastResultDetails(): Promise<Record<string, unknown> | undefined> {
      const e = (await auditEvents()).findLast((x) => x.type === 'attestation.result' && x.subject === a.id);
      return e?.details as Record<string, unknown> | undefined;
    }

    async function gate(id: string): Promise<AttestationStatus> {
      return (await admin.call<AttestationStatus>('GET', `/v1/devices/${id}/attestation`)).body;
    }

    /** A failed verdict is refused at the gate with the same reasons, and the webhook hears of it. */
    async function assertRefused(verdict: VerdictResponse, expected: string[]) {
      assert.equal(verdict.pass, false);
      assert.deepEqual(codes(verdict), expected);
      assert.deepEqual(verdict.codes, expected);
      const status = await gate(a.id);
      assert.equal(status.trusted, false);
      assert.equal(status.state, 'untrusted');
      assert.equal(status.lastVerdict?.id, verdict.verdictId);
      assert.deepEqual(codes(status), expected);
      assert.deepEqual([status.codes, status.lastVerdict?.codes], [expected, expected]);
      const details = await lastResultDetails();
      assert.deepEqual(details?.codes, expected);
      assert.match(String(details?.reason), new RegExp(`^${expected[0]}: `));
      const hook = await webhook.next();
      assert.equal(hook.type, 'attestation.failed');
      assert.equal(hook.deviceId, a.id);
      assert.deepEqual(codes(hook as { reasons: Array<{ code: string }> }), expected);
    }

    before(async () => {
      device = await startTestTpmWithAk();
      other = await startTestTpmWithAk();
      running = device.tpm;
      tpm = device.client;
      webhook = await startWebhook();
      dataDir = mkdtempSync(join(tmpdir(), 'eg-attest-'));
      const controlPlane = controlPlanePlugins({
        dataDir,
        attestation: { freshnessSeconds: 300, onFailure: { webhookUrl: webhook.url } },
      });
      plugin = controlPlane.attestation;
      auditLog = () => controlPlane.audit.log!;
      pgDb = backend === 'postgres' ? await createTempDatabase() : undefined;
      fleet = await startTestFleet({ dataDir, plugins: controlPlane.all, ...(pgDb ? { dbUrl: pgDb.url } : {}) });
      admin = fleet.client(await fleet.adminCredential());
      a = await enrolledDevice(device.keys);
      b = await enrolledDevice(other.keys);
      goldenLog = await playBoot(tpm, BANKS, syntheticBootEvents(defaultSyntheticBoot(), BANKS));
      const policy = formatBootPolicyYaml(createBootPolicy(parseEventLog(goldenLog)));
      await admin.call('POST', '/v1/attestation/policies', { policy, label: 'golden.yaml', device: a.id });
      await admin.call('PUT', `/v1/attestation/groups/line-1/devices/${b.id}`);
      await admin.call('POST', '/v1/attestation/policies', { policy, label: 'golden.yaml', group: 'line-1' });
    });
    after(async () => {
      await fleet?.stop();
      await pgDb?.drop();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
      webhook?.server.close();
      await stopTestTpm(running);
      await stopTestTpm(device?.tpm);
      await stopTestTpm(other?.tpm);
    });

    test('the played boot passes, opens the gate for the freshness window, and is an audit event', async () => {
      const { verdict } = await attest(goldenLog);
      assert.deepEqual(
        { pass: verdict.pass, codes: verdict.codes, reasons: verdict.reasons, events: verdict.events },
        { pass: true, codes: [], reasons: [], events: [] },
      );
      const status = await gate(a.id);
      assert.equal(status.state, 'trusted');
      assert.deepEqual(status.codes, []);
      assert.equal(status.trustedUntil, verdict.trustedUntil);
      assert.equal((await plugin.attestationGate(a.id)).trusted, true);
      const result = (await auditEvents()).find((e) => e.type === 'attestation.result' && e.subject === a.id);
      assert.deepEqual(result?.details, { deviceId: a.id, verified: true });
    });

    test('a device silent beyond the window is untrusted, and the timer records it once', async () => {
      await attest(goldenLog);
      const until = new Date((await gate(a.id)).trustedUntil!);
      const verifier = plugin.verifier!;
      assert.equal((await verifier.status(a.id, new Date(until.getTime() - 1000))).trusted, true);
      const later = new Date(until.getTime() + 1000);
      const status = await verifier.status(a.id, later);
      assert.equal(status.state, 'untrusted');
      assert.deepEqual(codes(status), ['EVIDENCE_STALE']);
      assert.deepEqual(await verifier.recordSilentDevices(later), [a.id]);
      assert.deepEqual(await verifier.recordSilentDevices(later), []);
      assert.deepEqual((await lastResultDetails())?.codes, ['EVIDENCE_STALE']);
      const hook = await webhook.next();
      assert.deepEqual([hook.type, hook.deviceId], ['attestation.silent', a.id]);
    });

    test('nonce replayed', async () => {
      const { issued, evidence, verdict } = await attest(goldenLog);
      assert.equal(verdict.pass, true);
      await assertRefused(await pushAttestationEvidence(a.client, issued.nonce, evidence), ['NONCE_REPLAYED']);
    });

    test('the binary evidence body: the played boot passes, carries the next nonce, and a nonce is spent for both forms', async () => {
      const first = await pushOver(await requestAttestationNonce(a.client), goldenLog, {
        binary: true,
        askNextNonce: true,
      });
      assert.deepEqual([first.verdict.pass, first.verdict.codes], [true, []]);
      const carried = first.verdict.nextNonce!;
      const second = await pushOver(carried, goldenLog, { binary: true });
      assert.deepEqual([second.verdict.pass, second.verdict.codes, second.verdict.nextNonce], [true, [], undefined]);
      // Spent in the binary form: refused in either form.
      await assertRefused(await pushAttestationEvidence(a.client, carried.nonce, second.evidence), ['NONCE_REPLAYED']);
      await assertRefused(await pushAttestationEvidence(a.client, carried.nonce, second.evidence, { binary: true }), [
        'NONCE_REPLAYED',
      ]);
      // The same checks hold: another device's nonce, and an edited log.
      await assertRefused(
        (await pushOver(await requestAttestationNonce(b.client), goldenLog, { binary: true })).verdict,
        ['NONCE_OTHER_DEVICE'],
      );
      const kernel = parseEventLog(goldenLog).events.find((e) => e.pcr === 9 && e.data.includes('vmlinuz'))!;
      const edited = Buffer.from(goldenLog);
      edited[kernel.offset + 14] = edited[kernel.offset + 14]! ^ 0xff;
      const refused = (await pushOver(await requestAttestationNonce(a.client), edited, { binary: true })).verdict;
      await assertRefused(refused, ['PCRS_DO_NOT_MATCH_LOG']);
      // The device is trusted again after a good binary push.
      assert.equal(
        (await pushOver(await requestAttestationNonce(a.client), goldenLog, { binary: true })).verdict.pass,
        true,
      );
    });

    test('nonce from another device', async () => {
      const { verdict } = await attest(goldenLog, { asker: b.client });
      await assertRefused(verdict, ['NONCE_OTHER_DEVICE']);
    });

    test('a verdict carries the next nonce when asked: one request per round, same rules as an asked nonce', async () => {
      const first = await attest(goldenLog);
      assert.equal(first.verdict.nextNonce, undefined);
      const asked = await pushOver(await requestAttestationNonce(a.client), goldenLog, { askNextNonce: true });
      const carried = asked.verdict.nextNonce!;
      assert.equal(asked.verdict.pass, true);
      assert.match(carried.nonce, /^[0-9a-f]{64}$/);
      assert.equal(carried.pcrs, first.issued.pcrs);
      assert.equal(carried.ttlSeconds, 60);
      const lifetime = Date.parse(carried.expiresAt) - Date.now();
      assert.ok(lifetime > 50_000 && lifetime <= 60_000, `expires in ${lifetime} ms`);
      // The carried nonce is good for the next round, which carries another one.
      const second = await pushOver(carried, goldenLog, { askNextNonce: true });
      assert.deepEqual([second.verdict.pass, second.verdict.codes], [true, []]);
      assert.notEqual(second.verdict.nextNonce!.nonce, carried.nonce);
      // Single use.
      await assertRefused(await pushAttestationEvidence(a.client, carried.nonce, second.evidence), ['NONCE_REPLAYED']);
      // Bound to the device it was carried to: device b cannot spend a's nonce...
      const forA = (await pushOver(await requestAttestationNonce(a.client), goldenLog, { askNextNonce: true })).verdict
        .nextNonce!;
      const stolen = await pushOver(forA, goldenLog, { pusher: b.client, by: other.client, keys: other.keys });
      assert.deepEqual([stolen.verdict.pass, stolen.verdict.codes], [false, ['NONCE_OTHER_DEVICE']]);
      assert.deepEqual([(await webhook.next()).deviceId], [b.id]);
      // ...and it expires like any nonce.
      await fleet.server.ctx.store.db
        .withTables<{ attestation_nonces: { nonce: string; expires_at: string } }>()
        .updateTable('attestation_nonces')
        .set({ expires_at: new Date(Date.now() - 1000).toISOString() })
        .where('nonce', '=', forA.nonce)
        .execute();
      await assertRefused((await pushOver(forA, goldenLog)).verdict, ['NONCE_EXPIRED']);
      // A refused round still carries a nonce when asked: the device is not sent back to /nonce.
      const refused = await pushOver(forA, goldenLog, { askNextNonce: true });
      await assertRefused(refused.verdict, ['NONCE_EXPIRED']);
      const recovered = await pushOver(refused.verdict.nextNonce!, goldenLog);
      assert.equal(recovered.verdict.pass, true);
    });

    test('when the audit store refuses writes, the verdict is still recorded alone and the lost event counted', async () => {
      const db = fleet.server.ctx.store.db;
      const lost = await failureCount(fleet, 'attestation.result');
      await refuseAuditWrites(backend, db, true);
      let carried;
      try {
        const { verdict } = await pushOver(await requestAttestationNonce(a.client), goldenLog, { askNextNonce: true });
        assert.deepEqual([verdict.pass, verdict.codes], [true, []]);
        carried = verdict.nextNonce!;
        const status = await gate(a.id);
        assert.deepEqual([status.trusted, status.lastVerdict?.id], [true, verdict.verdictId]);
        assert.equal(await failureCount(fleet, 'attestation.result'), lost + 1);
      } finally {
        await refuseAuditWrites(backend, db, false);
      }
      // The nonce written with it (alone) is good; with the store back, the verdict is an entry again.
      const next = await pushOver(carried, goldenLog);
      assert.equal(next.verdict.pass, true);
      const results = (await auditEvents()).filter((e) => e.type === 'attestation.result' && e.subject === a.id);
      assert.deepEqual(results.at(-1)?.details, { deviceId: a.id, verified: true });
    });

    test("quote by another TPM's AK", async () => {
      const otherLog = await playBoot(other.client, BANKS, syntheticBootEvents(defaultSyntheticBoot(), BANKS));
      assert.ok(otherLog.equals(goldenLog));
      const { verdict } = await attest(goldenLog, { by: other.client, keys: other.keys });
      await assertRefused(verdict, ['QUOTE_SIGNATURE_INVALID']);
      // The same quote is good evidence for the device that owns that AK.
      const own = await attest(otherLog, { asker: b.client, pusher: b.client, by: other.client, keys: other.keys });
      assert.equal(own.verdict.pass, true);
    });

    test('log edited: the kernel digest changed', async () => {
      const parsed = parseEventLog(goldenLog);
      const kernel = parsed.events.find((e) => e.pcr === 9 && e.data.includes('vmlinuz'))!;
      const edited = Buffer.from(goldenLog);
      edited[kernel.offset + 14] = edited[kernel.offset + 14]! ^ 0xff;
      await assertRefused((await attest(edited)).verdict, ['PCRS_DO_NOT_MATCH_LOG']);
    });

    test('event relabelled: the kernel image labelled as an action', async () => {
      const images = parseEventLog(goldenLog).events.filter(
        (e) => e.pcr === 4 && e.type === EV.EFI_BOOT_SERVICES_APPLICATION,
      );
      const relabelled = Buffer.from(goldenLog);
      relabelled.writeUInt32LE(EV.EFI_ACTION, images.at(-1)!.offset + 4);
      await assertRefused((await attest(relabelled)).verdict, ['EVENT_RELABELLED']);
    });

    test('PCR extended after boot', async () => {
      await tpm.extendPcr(4, 'sha256', randomBytes(32));
      await assertRefused((await attest(goldenLog)).verdict, ['PCRS_DO_NOT_MATCH_LOG']);
    });

    test('Secure Boot off (the verdict also records the reboot)', async () => {
      const log = await reboot({ ...defaultSyntheticBoot(), secureBoot: false });
      const { verdict } = await attest(log);
      await assertRefused(verdict, ['SECURE_BOOT_DISABLED']);
      assert.deepEqual(
        verdict.events.map((e) => e.code),
        ['REBOOT'],
      );
      assert.deepEqual((await gate(a.id)).lastVerdict?.events?.[0]?.code, 'REBOOT');
      assert.deepEqual((await lastResultDetails())?.events, ['REBOOT']);
    });

    test('dbx missing a required entry', async () => {
      const boot = defaultSyntheticBoot();
      const log = await reboot({ ...boot, dbx: boot.dbx.slice(1) });
      await assertRefused((await attest(log)).verdict, ['DBX_MISSING_ENTRY']);
    });

    test('kernel digest not in the policy', async () => {
      const log = await reboot({ ...defaultSyntheticBoot(), kernel: Buffer.from('vmlinuz-6.1.0-evil') });
      await assertRefused((await attest(log)).verdict, ['KERNEL_NOT_ALLOWED']);
    });

    test('after the tampered boots, the golden boot passes again', async () => {
      const log = await reboot(defaultSyntheticBoot());
      assert.equal((await attest(log)).verdict.pass, true);
      assert.equal((await gate(a.id)).trusted, true);
    });

    test('quote clock: the counters are real and grow; a TPM state rolled back to an older copy is refused', async () => {
      const snapshot = mkdtempSync(join(tmpdir(), 'eg-tpm-snapshot-'));
      try {
        const log = await reboot(defaultSyntheticBoot(), (dir) => cpSync(dir, snapshot, { recursive: true }));
        const first = await attest(log);
        assert.deepEqual([first.verdict.pass, first.verdict.events.map((e) => e.code)], [true, ['REBOOT']]);
        const clock1 = parseTpmsAttest(first.evidence.quote).clockInfo;
        assert.equal(clock1.safe, true);
        // No reboot between: the same counters, a later clock.
        const again = await attest(log);
        assert.deepEqual([again.verdict.pass, again.verdict.events], [true, []]);
        const clock2 = parseTpmsAttest(again.evidence.quote).clockInfo;
        assert.deepEqual([clock2.resetCount, clock2.restartCount], [clock1.resetCount, clock1.restartCount]);
        assert.ok(clock2.clock > clock1.clock);
        const later = await attest(await reboot(defaultSyntheticBoot()));
        assert.equal(later.verdict.pass, true);
        assert.equal(parseTpmsAttest(later.evidence.quote).clockInfo.resetCount, clock1.resetCount + 1);
        // The device's TPM state restored from the copy taken two boots ago.
        const restored = await reboot(defaultSyntheticBoot(), (dir) => {
          rmSync(dir, { recursive: true, force: true });
          cpSync(snapshot, dir, { recursive: true });
        });
        await assertRefused((await attest(restored)).verdict, ['RESET_COUNT_DECREASED']);
        // The refused quote did not lower the mark the verifier keeps.
        await assertRefused((await attest(restored)).verdict, ['RESET_COUNT_DECREASED']);
      } finally {
        rmSync(snapshot, { recursive: true, force: true });
      }
    });
  });
}
