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
import {
  encodeEvidence,
  EVIDENCE_MEDIA_TYPE,
  MAX_EVIDENCE_LOG_BYTES,
  requestAttestationNonce,
  type FleetClient,
} from '../../src/fleet/index.ts';
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

  test('fixed bad binary evidence bodies', async () => {
    const good = encodeEvidence({
      nonce: 'ab'.repeat(32),
      quote: Buffer.alloc(3),
      signature: Buffer.alloc(3),
      eventLog: Buffer.alloc(3),
      nextNonce: false,
    });
    const withLength = (at: number, value: number, bytes: 2 | 4) => {
      const b = Buffer.from(good);
      if (bytes === 2) b.writeUInt16BE(value, at);
      else b.writeUInt32BE(value, at);
      return b;
    };
    const quoteAt = 38;
    const logAt = quoteAt + 2 + 3 + 2 + 3;
    const bad: Array<[string, Buffer]> = [
      ['empty', Buffer.alloc(0)],
      ['JSON sent as binary', Buffer.from(JSON.stringify({ nonce: 'ab'.repeat(32) }))],
      ['wrong magic', Buffer.concat([Buffer.from('EGEX'), good.subarray(4)])],
      ['version 2', Buffer.concat([good.subarray(0, 4), Buffer.from([2]), good.subarray(5)])],
      ['unknown flag', Buffer.concat([good.subarray(0, 5), Buffer.from([0x02]), good.subarray(6)])],
      ['header only', good.subarray(0, quoteAt)],
      ['ends inside a length', good.subarray(0, quoteAt + 1)],
      ['quote over its cap', withLength(quoteAt, 4097, 2)],
      ['quote longer than the body', withLength(quoteAt, 4000, 2)],
      ['event log over its cap', withLength(logAt, MAX_EVIDENCE_LOG_BYTES + 1, 4)],
      ['event log longer than the body', withLength(logAt, 4, 4)],
      ['a byte after the log', Buffer.concat([good, Buffer.alloc(1)])],
    ];
    for (const [what, body] of bad) {
      const r = await dev.client.send('POST', '/v1/attestation/evidence', body, {
        'content-type': EVIDENCE_MEDIA_TYPE,
      });
      assertTyped4xx(r, what);
      assert.equal((r.body as ErrBody).error?.code, 'EG_BAD_REQUEST', what);
    }
    // The OpenAPI document names both forms.
    const doc = (await dev.client.send('GET', '/docs/json')).body as {
      paths: Record<string, { post?: { requestBody?: { content?: Record<string, unknown> } } }>;
    };
    assert.deepEqual(Object.keys(doc.paths['/v1/attestation/evidence']?.post?.requestBody?.content ?? {}).sort(), [
      'application/json',
      EVIDENCE_MEDIA_TYPE,
    ]);
    // Another binary type is not evidence.
    const other = await dev.client.send('POST', '/v1/attestation/evidence', good, {
      'content-type': 'application/octet-stream',
    });
    assert.equal(other.status, 415);
    assertTyped4xx(other, 'octet-stream');
  });

  test('fast-check: arbitrary and mutated binary evidence bodies never get a 5xx (300 cases)', async () => {
    const { nonce } = await requestAttestationNonce(dev.client);
    const valid = encodeEvidence({
      nonce,
      quote: Buffer.alloc(40, 1),
      signature: Buffer.alloc(40, 2),
      eventLog: GOLDEN_LOG,
      nextNonce: true,
    });
    // Well-formed, garbage quote: read as evidence and refused as a verdict, with the next nonce.
    const read = await dev.client.send<{ pass: boolean; codes: string[]; nextNonce?: unknown }>(
      'POST',
      '/v1/attestation/evidence',
      valid,
      { 'content-type': EVIDENCE_MEDIA_TYPE },
    );
    assert.equal(read.status, 200, JSON.stringify(read.body));
    assert.deepEqual(
      [read.body.pass, read.body.codes.length > 0, read.body.nextNonce !== undefined],
      [false, true, true],
    );
    const mutated = fc
      .tuple(fc.nat({ max: valid.length - 1 }), fc.integer({ min: 0, max: 255 }), fc.nat({ max: valid.length }))
      .map(([at, byte, cut]) => {
        const b = Buffer.from(valid);
        b[at] = byte;
        return b.subarray(0, Math.max(cut, at + 1));
      });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
          mutated,
        ),
        async (body) => {
          const r = await dev.client.send('POST', '/v1/attestation/evidence', body, {
            'content-type': EVIDENCE_MEDIA_TYPE,
          });
          assert.ok(r.status < 500, `HTTP ${r.status} for ${body.subarray(0, 64).toString('hex')}`);
          if (r.status !== 200) assertTyped4xx(r, body.subarray(0, 64).toString('hex'));
          else assert.equal((r.body as { pass: boolean }).pass, false);
        },
      ),
      { numRuns: 300 },
    );
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
