/**
 * A control plane's error answer is outside input to the device and the CLI: members that are not
 * strings (`[{"toString":0}]`, which String() and template literals cannot convert) are left out
 * of the typed error instead of throwing a TypeError.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { forwardJournal, httpLogReader, type Journal } from '../../src/audit/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { serverError } from '../../src/fleet/index.ts';
import { FleetCa } from '../../src/pki/index.ts';
import { tempDir } from '../helpers/workspace.ts';

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

test('forwardJournal: an error answer whose message is not a string fails typed', async () => {
  for (const v of HOSTILE) {
    const transport = {
      send: async <T>() => ({ status: 500, body: { error: { message: [v] } } as T }),
    };
    await assert.rejects(forwardJournal({} as Journal, transport), (e: unknown) => {
      assert.ok(isEdgeguardError(e, 'EG_SERVER'), String(e));
      assert.equal(e.message, 'asking the server for the journal head failed (HTTP 500).');
      return true;
    });
  }
});

test('httpLogReader: an error answer whose message is not a string fails typed', async (t) => {
  const dir = await tempDir(t);
  const ca = await FleetCa.create(dir, 'server error answers test');
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issued = await ca.issueServerCertificate({
    hostnames: ['127.0.0.1'],
    publicKey: pair.publicKey.export({ type: 'spki', format: 'der' }),
  });
  const body = JSON.stringify({ error: { code: HOSTILE[0], message: [HOSTILE[1]] } });
  const server = createServer(
    { key: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }), cert: issued.chainPem },
    (_req, res) => res.writeHead(500, { 'content-type': 'application/json' }).end(body),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const reader = await httpLogReader({
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    pems: {
      ca: ca.rootPem,
      cert: issued.chainPem,
      key: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    },
  });
  await assert.rejects(reader.checkpoint(), (e: unknown) => {
    assert.ok(isEdgeguardError(e, 'EG_SERVER'), String(e));
    assert.equal(e.message, 'the server answered 500 to /v1/audit/checkpoint');
    return true;
  });
});
