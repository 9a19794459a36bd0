/**
 * The agent's evidence push on a real swtpm against a real control plane: on demand and on its
 * schedule the reporter quotes the policy's PCRs over the server's nonce and pushes the event log
 * read from its configured path; a tampered log on disk is refused; a missing log is a typed
 * failure that the reporter survives.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { AttestationReporter } from '../../src/agent/index.ts';
import { createBootPolicy, formatBootPolicyYaml } from '../../src/attest/index.ts';
import { defaultSyntheticBoot, parseEventLog, playBoot, syntheticBootEvents } from '../../src/eventlog/index.ts';
import type { FleetClient, VerdictResponse } from '../../src/fleet/index.ts';
import { controlPlanePlugins, type AttestationServerPlugin } from '../../src/server/index.ts';
import { TPM_ALG } from '../../src/tpm/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { TPM_SKIP, startTestTpmWithAk, stopTestTpm, type TestTpmWithAk } from '../helpers/swtpm.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';

const BANKS = [TPM_ALG.SHA256];

describe('agent attestation reporter on swtpm', { skip: TPM_SKIP }, () => {
  let dir: string;
  let device: TestTpmWithAk;
  let fleet: TestFleet;
  let plugin: AttestationServerPlugin;
  let client: FleetClient;
  let deviceId: string;
  let logPath: string;
  let goldenLog: Buffer;

  const reporter = (onVerdict?: (v: VerdictResponse) => void, intervalMs?: number, via: FleetClient = client) =>
    new AttestationReporter({
      client: via,
      tpm: device.client,
      ak: device.keys.ak,
      eventLogPath: logPath,
      log: pino({ level: 'silent' }),
      ...(intervalMs !== undefined ? { intervalMs } : {}),
      ...(onVerdict ? { onVerdict } : {}),
    });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eg-agent-attest-'));
    device = await startTestTpmWithAk();
    const controlPlane = controlPlanePlugins({ dataDir: dir });
    plugin = controlPlane.attestation;
    fleet = await startTestFleet({ dataDir: dir, plugins: controlPlane.all });
    const cred = await fleet.deviceCredential();
    deviceId = cred.deviceId;
    await fleet.server.ctx.store.db
      .updateTable('devices')
      .set({ ak_public: Buffer.from(device.keys.ak.public).toString('base64') })
      .where('id', '=', deviceId)
      .execute();
    client = fleet.client(cred);
    goldenLog = await playBoot(device.client, BANKS, syntheticBootEvents(defaultSyntheticBoot(), BANKS));
    logPath = join(dir, 'binary_bios_measurements');
    writeFileSync(logPath, goldenLog);
    const policy = formatBootPolicyYaml(createBootPolicy(parseEventLog(goldenLog)));
    const admin = fleet.client(await fleet.adminCredential());
    await admin.call('POST', '/v1/attestation/policies', { policy, label: 'golden.yaml', device: deviceId });
  });
  after(async () => {
    await fleet?.stop();
    await stopTestTpm(device?.tpm);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('on demand: the played boot passes and the gate opens', async () => {
    const r = reporter();
    const verdict = await r.pushNow();
    assert.deepEqual([verdict.pass, verdict.reasons], [true, []]);
    assert.equal((await plugin.attestationGate(deviceId)).trusted, true);
    assert.equal(r.report.lastVerdict?.verdictId, verdict.verdictId);
  });

  test('on its schedule: pushes again and again until stopped', async () => {
    const verdicts: VerdictResponse[] = [];
    let resolveTwo: () => void;
    const two = new Promise<void>((resolve) => (resolveTwo = resolve));
    const r = reporter((v) => {
      verdicts.push(v);
      if (verdicts.length === 2) resolveTwo();
    }, 20);
    r.start();
    await two;
    r.stop();
    assert.ok(verdicts.every((v) => v.pass));
    assert.notEqual(verdicts[0]!.verdictId, verdicts[1]!.verdictId);
  });

  test('a log edited on disk is refused; a missing log is a typed failure the reporter survives', async () => {
    const parsed = parseEventLog(goldenLog);
    const kernel = parsed.events.find((e) => e.pcr === 9 && e.data.includes('vmlinuz'))!;
    const edited = Buffer.from(goldenLog);
    edited[kernel.offset + 14] = edited[kernel.offset + 14]! ^ 0xff;
    writeFileSync(logPath, edited);
    const r = reporter();
    const refused = await r.pushNow();
    assert.deepEqual(
      refused.reasons.map((x) => x.code),
      ['PCRS_DO_NOT_MATCH_LOG'],
    );
    assert.equal((await plugin.attestationGate(deviceId)).trusted, false);
    rmSync(logPath);
    await assert.rejects(r.pushNow(), { code: 'EG_NOT_FOUND' });
    assert.equal(r.report.consecutiveFailures, 1);
    writeFileSync(logPath, goldenLog);
    assert.equal((await r.pushNow()).pass, true);
    assert.equal(r.report.consecutiveFailures, 0);
  });

  test('in steady state a round is one request: the nonce the last verdict carried is used, once', async () => {
    const paths: string[] = [];
    const r = reporter(undefined, undefined, countingClient(client, paths));
    for (let i = 0; i < 3; i++) assert.equal((await r.pushNow()).pass, true);
    assert.deepEqual(paths, [
      '/v1/attestation/nonce',
      '/v1/attestation/evidence',
      '/v1/attestation/evidence',
      '/v1/attestation/evidence',
    ]);
    assert.equal(r.report.noncesCarried, 2);
    // A round that fails before its push has used up the held nonce: the next one asks again.
    rmSync(logPath);
    await assert.rejects(r.pushNow(), { code: 'EG_NOT_FOUND' });
    writeFileSync(logPath, goldenLog);
    paths.length = 0;
    assert.equal((await r.pushNow()).pass, true);
    assert.deepEqual(paths, ['/v1/attestation/nonce', '/v1/attestation/evidence']);
  });

  /**
   * A client that makes the real control plane answer as an older one would: the binary evidence
   * body goes out as application/octet-stream (415, as a type it does not read), and with
   * `withoutNextNonce` the JSON field nextNonce under a name it does not know (400); while `spoil()`
   * says so, a JSON body's quote is one the schema refuses for another reason (400).
   */
  const olderControlPlane = (
    sent: Array<{ path: string; form: string; nextNonce: boolean }>,
    withoutNextNonce: boolean,
    spoil: () => boolean = () => false,
  ) =>
    new Proxy(client, {
      get(target, prop, receiver) {
        if (prop !== 'call') return Reflect.get(target, prop, receiver) as unknown;
        return (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
          const call = (b: unknown, h: Record<string, string>) =>
            (target.call as (...a: unknown[]) => Promise<unknown>).call(target, method, path, b, h);
          if (Buffer.isBuffer(body)) {
            sent.push({ path, form: 'binary', nextNonce: (body[5]! & 1) === 1 });
            return call(body, { ...headers, 'content-type': 'application/octet-stream' });
          }
          const json = body as Record<string, unknown> | undefined;
          sent.push({ path, form: 'json', nextNonce: json?.nextNonce === true });
          if (spoil() && json && 'quote' in json) return call({ ...json, quote: 42 }, headers);
          if (withoutNextNonce && json && 'nextNonce' in json) {
            const { nextNonce, ...others } = json;
            return call({ ...others, nextNonceFromTheFuture: nextNonce }, headers);
          }
          return call(body, headers);
        };
      },
    });

  test('pushes the binary evidence body', async () => {
    const sent: string[] = [];
    const seen = new Proxy(client, {
      get(target, prop, receiver) {
        if (prop !== 'call') return Reflect.get(target, prop, receiver) as unknown;
        return (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
          sent.push(`${path} ${Buffer.isBuffer(body) ? headers['content-type'] : 'json'}`);
          return (target.call as (...a: unknown[]) => Promise<unknown>).call(target, method, path, body, headers);
        };
      },
    });
    const r = reporter(undefined, undefined, seen);
    for (let i = 0; i < 2; i++) assert.equal((await r.pushNow()).pass, true);
    assert.deepEqual(sent, [
      '/v1/attestation/nonce json',
      '/v1/attestation/evidence application/vnd.edgeguard.evidence',
      '/v1/attestation/evidence application/vnd.edgeguard.evidence',
    ]);
  });

  test('a control plane older than the binary body: its 415 makes the reporter push the same evidence as JSON', async () => {
    const sent: Array<{ path: string; form: string; nextNonce: boolean }> = [];
    const r = reporter(undefined, undefined, olderControlPlane(sent, false));
    for (let i = 0; i < 2; i++) assert.equal((await r.pushNow()).pass, true);
    assert.deepEqual(sent, [
      { path: '/v1/attestation/nonce', form: 'json', nextNonce: false },
      { path: '/v1/attestation/evidence', form: 'binary', nextNonce: true },
      // Refused before the nonce was looked at: the same nonce, as JSON, still asking for the next one.
      { path: '/v1/attestation/evidence', form: 'json', nextNonce: true },
      // The carried nonce is used, and JSON is kept for a while.
      { path: '/v1/attestation/evidence', form: 'json', nextNonce: true },
    ]);
    assert.equal(r.report.consecutiveFailures, 0);
  });

  test('a control plane older than nextNonce: its 400 makes the reporter push the same evidence without the field', async () => {
    // The real control plane refuses a field it does not know with 400, as one older than
    // nextNonce refuses nextNonce: the field is sent under a name this one does not know either.
    // Older than nextNonce is older than the binary body too (415 first).
    const sent: Array<{ path: string; form: string; nextNonce: boolean }> = [];
    const r = reporter(undefined, undefined, olderControlPlane(sent, true));
    for (let i = 0; i < 2; i++) assert.equal((await r.pushNow()).pass, true);
    assert.deepEqual(sent, [
      { path: '/v1/attestation/nonce', form: 'json', nextNonce: false },
      { path: '/v1/attestation/evidence', form: 'binary', nextNonce: true },
      { path: '/v1/attestation/evidence', form: 'json', nextNonce: true },
      // Refused before the nonce was looked at: the same nonce, without the field.
      { path: '/v1/attestation/evidence', form: 'json', nextNonce: false },
      // No nonce was carried, and neither the binary body nor the field is tried again for a while.
      { path: '/v1/attestation/nonce', form: 'json', nextNonce: false },
      { path: '/v1/attestation/evidence', form: 'json', nextNonce: false },
    ]);
    assert.equal(r.report.consecutiveFailures, 0);
  });

  test("any other 400 is the round's failure: no second push, and the next round asks for the next nonce again", async () => {
    const sent: Array<{ path: string; form: string; nextNonce: boolean }> = [];
    let spoil = true;
    const r = reporter(
      undefined,
      undefined,
      olderControlPlane(sent, false, () => spoil),
    );
    await assert.rejects(r.pushNow(), (e) => isEdgeguardError(e, 'EG_BAD_REQUEST') && !/additional/.test(e.message));
    spoil = false;
    assert.equal((await r.pushNow()).pass, true);
    assert.deepEqual(sent, [
      { path: '/v1/attestation/nonce', form: 'json', nextNonce: false },
      { path: '/v1/attestation/evidence', form: 'binary', nextNonce: true },
      // Refused by the schema for its quote, not for nextNonce: no push without the field.
      { path: '/v1/attestation/evidence', form: 'json', nextNonce: true },
      { path: '/v1/attestation/nonce', form: 'json', nextNonce: false },
      { path: '/v1/attestation/evidence', form: 'json', nextNonce: true },
    ]);
  });
});

describe('agent attestation reporter with nonces too short-lived to carry', { skip: TPM_SKIP }, () => {
  let dir: string;
  let device: TestTpmWithAk;
  let fleet: TestFleet;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eg-agent-attest-ttl-'));
    device = await startTestTpmWithAk();
    // 10 s is within the reporter's margin: a carried nonce is never usable.
    const controlPlane = controlPlanePlugins({ dataDir: dir, attestation: { nonceTtlSeconds: 10 } });
    fleet = await startTestFleet({ dataDir: dir, plugins: controlPlane.all });
  });
  after(async () => {
    await fleet?.stop();
    await stopTestTpm(device?.tpm);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a carried nonce that would expire before the push is not used: the reporter asks for one', async () => {
    const cred = await fleet.deviceCredential();
    await fleet.server.ctx.store.db
      .updateTable('devices')
      .set({ ak_public: Buffer.from(device.keys.ak.public).toString('base64') })
      .where('id', '=', cred.deviceId)
      .execute();
    const log = await playBoot(device.client, BANKS, syntheticBootEvents(defaultSyntheticBoot(), BANKS));
    const logPath = join(dir, 'binary_bios_measurements');
    writeFileSync(logPath, log);
    const admin = fleet.client(await fleet.adminCredential());
    const policy = formatBootPolicyYaml(createBootPolicy(parseEventLog(log)));
    await admin.call('POST', '/v1/attestation/policies', { policy, label: 'golden.yaml', device: cred.deviceId });
    const paths: string[] = [];
    const r = new AttestationReporter({
      client: countingClient(fleet.client(cred), paths),
      tpm: device.client,
      ak: device.keys.ak,
      eventLogPath: logPath,
      log: pino({ level: 'silent' }),
    });
    for (let i = 0; i < 2; i++) {
      const verdict = await r.pushNow();
      assert.equal(verdict.pass, true);
      assert.equal(verdict.nextNonce?.ttlSeconds, 10);
    }
    assert.deepEqual(paths, [
      '/v1/attestation/nonce',
      '/v1/attestation/evidence',
      '/v1/attestation/nonce',
      '/v1/attestation/evidence',
    ]);
    assert.equal(r.report.noncesCarried, 0);
  });
});

/** `client`, recording the path of every call. */
function countingClient(client: FleetClient, paths: string[]): FleetClient {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== 'call') return Reflect.get(target, prop, receiver) as unknown;
      return (method: string, path: string, ...rest: unknown[]) => {
        paths.push(path);
        return (target.call as (...a: unknown[]) => Promise<unknown>).call(target, method, path, ...rest);
      };
    },
  });
}
