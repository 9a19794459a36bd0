/**
 * The attestation routes against bad input: every malformed body is a 4xx with a typed code, never
 * a 5xx (fixed cases and fast-check bodies); well-formed evidence whose bytes are garbage is a
 * recorded failed verdict. And the revocation action: a failed verdict revokes the device, whose
 * next request is refused.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { createBootPolicy, formatBootPolicyYaml } from '../../src/attest/index.ts';
import { defaultSyntheticBoot, encodeEventLog, parseEventLog, syntheticBootEvents } from '../../src/eventlog/index.ts';
import { MAX_EVIDENCE_LOG_BYTES, requestAttestationNonce, type FleetClient } from '../../src/fleet/index.ts';
import { controlPlanePlugins, type AttestationOptions } from '../../src/server/index.ts';
import { TPM_ALG } from '../../src/tpm/index.ts';
import { AK_ATTRS, rsaPublic } from '../attest/tpm-public-builder.ts';
import { startTestFleet } from './fleet-helpers.ts';

type ErrBody = { error?: { code: string; message: string } };

async function startAttestationFleet(attestation: AttestationOptions) {
  const dataDir = mkdtempSync(join(tmpdir(), 'eg-attest-bodies-'));
  const fleet = await startTestFleet({ dataDir, plugins: controlPlanePlugins({ dataDir, attestation }).all });
  const admin = fleet.client(await fleet.adminCredential());
  /** A device with an AK-shaped key on record (no TPM behind it: its quotes never verify). */
  const device = async () => {
    const cred = await fleet.deviceCredential();
    const ak = rsaPublic({ attributes: AK_ATTRS, sign: true });
    await fleet.server.ctx.store.db
      .updateTable('devices')
      .set({ ak_public: ak.tpm2b.toString('base64') })
      .where('id', '=', cred.deviceId)
      .execute();
    return { id: cred.deviceId, client: fleet.client(cred) };
  };
  const stop = async () => {
    await fleet.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  return { fleet, admin, device, stop };
}

const GOLDEN_LOG = encodeEventLog([TPM_ALG.SHA256], syntheticBootEvents(defaultSyntheticBoot(), [TPM_ALG.SHA256]));

function assertTyped4xx(r: { status: number; body: unknown }, what: string) {
  assert.ok(r.status >= 400 && r.status < 500, `${what}: HTTP ${r.status}`);
  assert.match((r.body as ErrBody).error?.code ?? '', /^EG_[A-Z_]+$/, what);
}

describe('attestation routes refuse malformed bodies with a typed 4xx', () => {
  let env: Awaited<ReturnType<typeof startAttestationFleet>>;
  let dev: { id: string; client: FleetClient };

  before(async () => {
    env = await startAttestationFleet({});
    dev = await env.device();
    const policy = formatBootPolicyYaml(createBootPolicy(parseEventLog(GOLDEN_LOG)));
    await env.admin.call('POST', '/v1/attestation/policies', { policy, label: 'golden.yaml', device: dev.id });
  });
  after(async () => env?.stop());

  test('fixed bad evidence bodies', async () => {
    const nonce = 'ab'.repeat(32);
    const good = { nonce, quote: 'AAAA', signature: 'AAAA', eventLog: 'AAAA' };
    const bad: Array<[string, unknown]> = [
      ['null', null],
      ['array', []],
      ['string', 'evidence'],
      ['empty object', {}],
      ['no quote', { ...good, quote: undefined }],
      ['unknown member', { ...good, extra: 1 }],
      ['short nonce', { ...good, nonce: 'ab' }],
      ['nonce not hex', { ...good, nonce: 'zz'.repeat(32) }],
      ['quote not base64', { ...good, quote: '!!!!' }],
      ['event log not base64', { ...good, eventLog: `${'A'.repeat(50_000)}-AAA` }],
      ['padding inside the event log', { ...good, eventLog: 'AA==AAAA' }],
      ['signature a number', { ...good, signature: 7 }],
      ['quote too large', { ...good, quote: 'A'.repeat(8000) }],
      ['event log over the cap', { ...good, eventLog: 'A'.repeat(Math.ceil(MAX_EVIDENCE_LOG_BYTES / 3) * 4 + 4) }],
      ['pcrValues unknown bank', { ...good, pcrValues: { md5: { '0': 'ab'.repeat(32) } } }],
      ['pcrValues bad digest', { ...good, pcrValues: { sha256: { '0': 'xyz' } } }],
    ];
    for (const [what, body] of bad) {
      const r = await dev.client.send('POST', '/v1/attestation/evidence', body);
      assertTyped4xx(r, what);
    }
    assertTyped4xx(await dev.client.send('POST', '/v1/attestation/nonce', { pcrs: 'sha256:0' }), 'nonce with members');
  });

  test('fixed bad admin bodies', async () => {
    const policy = formatBootPolicyYaml(createBootPolicy(parseEventLog(GOLDEN_LOG)));
    const bad: Array<[string, unknown]> = [
      ['neither device nor group', { policy, label: 'p' }],
      ['both device and group', { policy, label: 'p', device: dev.id, group: 'g' }],
      ['not YAML', { policy: 'a: [', label: 'p', device: dev.id }],
      ['not a policy', { policy: 'version: 2\n', label: 'p', device: dev.id }],
      [
        'policy missing a PCR its checks read',
        { policy: policy.replace(/pcrs: .*/, 'pcrs: sha256:0'), label: 'p', device: dev.id },
      ],
      ['bad group name', { policy, label: 'p', group: '../x' }],
    ];
    for (const [what, body] of bad)
      assertTyped4xx(await env.admin.send('POST', '/v1/attestation/policies', body), what);
    assertTyped4xx(await env.admin.send('GET', '/v1/devices/..%2F/attestation'), 'bad device id');
    const unknown = await env.admin.send('GET', '/v1/devices/dev-0000000000000000/attestation');
    assert.equal(unknown.status, 404);
    assertTyped4xx(await dev.client.send('GET', `/v1/devices/${dev.id}/attestation`), 'a device asking the gate');
  });

  test('fast-check: arbitrary JSON and near-valid evidence bodies never get a 5xx (300 cases)', async () => {
    const nearValid = fc.record(
      {
        nonce: fc.oneof(fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), maxLength: 70 }), fc.string()),
        quote: fc.oneof(fc.base64String({ maxLength: 200 }), fc.string(), fc.integer()),
        signature: fc.oneof(fc.base64String({ maxLength: 200 }), fc.constant(null)),
        eventLog: fc.base64String({ maxLength: 400 }),
        pcrValues: fc.dictionary(fc.string(), fc.jsonValue()),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.jsonValue(), nearValid), async (body) => {
        const r = await dev.client.send('POST', '/v1/attestation/evidence', body);
        assert.ok(r.status < 500, `HTTP ${r.status} for ${JSON.stringify(body).slice(0, 200)}`);
      }),
      { numRuns: 300 },
    );
  });

  test('fast-check: well-formed evidence with garbage bytes is a failed verdict, never a 5xx (100 cases)', async () => {
    const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b).toString('base64'));
    await fc.assert(
      fc.asyncProperty(
        bytes(300),
        bytes(300),
        fc.oneof(bytes(2000), fc.constant(GOLDEN_LOG.toString('base64'))),
        async (quote, signature, eventLog) => {
          const { nonce } = await requestAttestationNonce(dev.client);
          const r = await dev.client.send<{ pass: boolean; reasons: Array<{ code: string }> }>(
            'POST',
            '/v1/attestation/evidence',
            { nonce, quote, signature, eventLog },
          );
          assert.equal(r.status, 200, JSON.stringify(r.body));
          assert.equal(r.body.pass, false);
          assert.ok(r.body.reasons.length > 0);
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('a failed verdict with the revocation action revokes the device', () => {
  let env: Awaited<ReturnType<typeof startAttestationFleet>>;
  after(async () => env?.stop());

  test("the device's next request is refused and the revocation is on record", async () => {
    env = await startAttestationFleet({ onFailure: { revokeCertificate: true } });
    const dev = await env.device();
    const { nonce } = await requestAttestationNonce(dev.client);
    const body = { nonce, quote: 'AAAA', signature: 'AAAA', eventLog: GOLDEN_LOG.toString('base64') };
    const r = await dev.client.send<{ pass: boolean; reasons: Array<{ code: string }> }>(
      'POST',
      '/v1/attestation/evidence',
      body,
    );
    assert.equal(r.status, 200);
    assert.deepEqual(
      r.body.reasons.map((x) => x.code),
      ['NO_POLICY'],
    );
    const next = await dev.client.send('POST', '/v1/attestation/nonce', {});
    assert.ok(next.status === 401 || next.status === 403, `HTTP ${next.status}`);
    const record = await env.fleet.server.ctx.store.getDevice(dev.id);
    assert.equal(record?.status, 'revoked');
    const gate = await env.admin.call<{ trusted: boolean; reasons: Array<{ code: string }> }>(
      'GET',
      `/v1/devices/${dev.id}/attestation`,
    );
    assert.equal(gate.body.trusted, false);
    assert.deepEqual(
      gate.body.reasons.map((x) => x.code),
      ['DEVICE_NOT_APPROVED', 'NO_POLICY'],
    );
  });
});
