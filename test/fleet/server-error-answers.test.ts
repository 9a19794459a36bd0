/**
 * A control plane's error answer is outside input to the device and the CLI: members that are not
 * strings (`[{"toString":0}]`, which String() and template literals cannot convert) are left out
 * of the typed error instead of throwing a TypeError.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { forwardJournal, httpLogReader, type Journal } from '../../src/audit/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { FleetClient, serverError } from '../../src/fleet/index.ts';
import { json, startFakeControlPlane } from '../helpers/fake-control-plane.ts';

const HOSTILE: unknown[] = [{ toString: 0 }, { toString: 0, valueOf: 0 }];

test('serverError: a code or message that is not a string gives EG_SERVER and the HTTP status', () => {
  for (const v of HOSTILE) {
    const e = serverError({ status: 502, body: { error: { code: v, message: [v] } }, headers: {} });
    assert.ok(isEdgeguardError(e, 'EG_SERVER'));
    assert.equal(e.message, 'the server answered HTTP 502.');
  }
  // A code this build does not know, or one only the prototype has, is not taken either.
  for (const code of ['toString', 'EG_NOT_A_CODE'])
    assert.ok(isEdgeguardError(serverError({ status: 500, body: { error: { code } }, headers: {} }), 'EG_SERVER'));
  const known = serverError({
    status: 404,
    body: { error: { code: 'EG_NOT_FOUND', message: 'no device x.' } },
    headers: {},
  });
  assert.ok(isEdgeguardError(known, 'EG_NOT_FOUND'));
  assert.equal(known.message, 'no device x.');
  assert.ok(isEdgeguardError(serverError({ status: 500, body: null, headers: {} }), 'EG_SERVER'));
});

test('forwardJournal: an error answer whose message is not a string fails typed', async (t) => {
  for (const v of HOSTILE) {
    const cp = await startFakeControlPlane(t, (_req, res) => json(res, 500, { error: { message: [v] } }));
    const client = new FleetClient({ server: cp.url, ca: cp.caPem, ...cp.client });
    t.after(() => client.close());
    await assert.rejects(forwardJournal({} as Journal, client), (e: unknown) => {
      assert.ok(isEdgeguardError(e, 'EG_SERVER'), String(e));
      assert.equal(e.message, 'asking the server for the journal head failed (HTTP 500).');
      return true;
    });
  }
});

test('httpLogReader: an error answer whose message is not a string fails typed', async (t) => {
  const body = { error: { code: HOSTILE[0], message: [HOSTILE[1]] } };
  const cp = await startFakeControlPlane(t, (_req, res) => json(res, 500, body));
  const reader = await httpLogReader({ url: cp.url, pems: { ca: cp.caPem, ...cp.client } });
  await assert.rejects(reader.checkpoint(), (e: unknown) => {
    assert.ok(isEdgeguardError(e, 'EG_SERVER'), String(e));
    assert.equal(e.message, 'the server answered 500 to /v1/audit/checkpoint');
    return true;
  });
});
