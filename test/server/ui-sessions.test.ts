/**
 * Dashboard sign-in links and sessions on both store backends: a link is spent by exactly one of
 * several racing sign-ins, a reuse is told apart from an expired or unknown token (and only its
 * first refusal is marked for the audit log), sessions end at sign-out, with their admin
 * certificate, and at expiry, and pruning drops what is past its lifetime.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createUiLoginLink, UiSessions } from '../../src/server/ui/sessions.ts';
import type { Store } from '../../src/store/index.ts';
import { BACKENDS } from '../helpers/stores.ts';

const URL_BASE = 'https://fleet.example:8443';
const tokenOf = (url: string) => url.split('#')[1]!;

for (const backend of BACKENDS) {
  describe(`dashboard sessions on ${backend.name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;

    before(async () => {
      ({ store, cleanup } = await backend.open());
    });
    after(async () => cleanup?.());

    it('spends a link once, whoever races for it', async () => {
      const sessions = new UiSessions(store);
      const link = await createUiLoginLink(store, { serverUrl: URL_BASE, admin: 'alice' });
      assert.match(link.url, /^https:\/\/fleet\.example:8443\/ui\/login#[A-Za-z0-9_-]{43}$/);
      const results = await Promise.all(Array.from({ length: 6 }, () => sessions.redeem(tokenOf(link.url))));
      const won = results.filter((r) => 'sessionId' in r);
      assert.equal(won.length, 1);
      const refused = results.filter((r) => 'refused' in r);
      assert.ok(refused.every((r) => 'refused' in r && r.refused === 'used' && r.admin === 'alice'));
      assert.equal(refused.filter((r) => 'refused' in r && r.firstForLink).length >= 1, true);
      const later = await sessions.redeem(tokenOf(link.url));
      assert.ok('refused' in later && later.refused === 'used' && !later.firstForLink);
    });

    it('tells an expired link and an unknown token apart', async () => {
      const sessions = new UiSessions(store);
      const old = await createUiLoginLink(store, {
        serverUrl: URL_BASE,
        admin: 'bob',
        now: new Date(Date.now() - 6 * 60_000),
      });
      const expired = await sessions.redeem(tokenOf(old.url));
      assert.ok('refused' in expired && expired.refused === 'expired' && expired.firstForLink);
      const unknown = await sessions.redeem('A'.repeat(43));
      assert.deepEqual(unknown, { refused: 'unknown', firstForLink: false });
      assert.deepEqual(await sessions.redeem('not a token'), { refused: 'unknown', firstForLink: false });
    });

    it('ends sessions at sign-out, at expiry, and with their admin certificate', async () => {
      const sessions = new UiSessions(store);
      const link = await createUiLoginLink(store, { serverUrl: URL_BASE, admin: 'carol' });
      const r = await sessions.redeem(tokenOf(link.url));
      assert.ok('sessionId' in r);
      assert.equal((await sessions.lookup(r.sessionId))?.admin, 'carol');
      await sessions.end(r.sessionId);
      assert.equal(await sessions.lookup(r.sessionId), undefined);

      const short = new UiSessions(store, -1);
      const l2 = await createUiLoginLink(store, { serverUrl: URL_BASE, admin: 'carol' });
      const r2 = await short.redeem(tokenOf(l2.url));
      assert.ok('sessionId' in r2);
      assert.equal(await short.lookup(r2.sessionId), undefined, 'an expired session is no session');

      const l3 = await createUiLoginLink(store, { serverUrl: URL_BASE, admin: 'dave', adminSerial: 'abc123' });
      const r3 = await sessions.redeem(tokenOf(l3.url));
      assert.ok('sessionId' in r3);
      // A serial the store never issued is not a good certificate: the session does not hold.
      assert.equal(await sessions.lookup(r3.sessionId), undefined);

      await short.prune();
      assert.equal(await sessions.lookup(r2.sessionId), undefined);
    });
  });
}
