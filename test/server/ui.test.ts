/**
 * The dashboard's server side without a browser: `edgeguard admin ui-login` both ways (the data
 * directory, an admin certificate over mutual TLS), single use, sessions ended with the admin's
 * certificate, no page without a session, the headers (CSP, cookie flags, caching), CSRF on
 * sign-out, text from devices escaped, and bad sign-in bodies answered 4xx with EG_ errors.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import type { InjectOptions } from 'fastify';
import { controlPlanePlugins, createUiLoginLink } from '../../src/server/index.ts';
import { escapeHtml, html } from '../../src/server/ui/html.ts';
import { UI_CSP } from '../../src/server/routes/ui.ts';
import { runCli } from '../helpers/cli.ts';
import { startTestFleet, type TestFleet } from './fleet-helpers.ts';

describe('dashboard sign-in and pages (server side)', () => {
  let fleet: TestFleet;
  let dataDir: string;
  let plugins: ReturnType<typeof controlPlanePlugins>;

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'eg-ui-srv-'));
    plugins = controlPlanePlugins({ dataDir, checkpointIntervalMs: 0 });
    fleet = await startTestFleet({ dataDir, plugins: plugins.all });
  });
  after(async () => fleet?.stop());

  const inject = (o: InjectOptions) => fleet.server.app.inject(o);

  async function signIn(url: string): Promise<{ status: number; cookie: string | undefined }> {
    const token = url.split('#')[1] ?? '';
    const r = await inject({ method: 'POST', url: '/ui/login', payload: { token } });
    const set = r.headers['set-cookie'];
    return { status: r.statusCode, cookie: typeof set === 'string' ? set.split(';')[0] : undefined };
  }

  it('admin ui-login --data prints a link that signs in once', async () => {
    const r = await runCli([
      '--json',
      'admin',
      'ui-login',
      '--data',
      dataDir,
      '--url',
      fleet.server.url,
      '--name',
      'carol',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { url: string; expiresAt: string };
    assert.ok(out.url.startsWith(`${fleet.server.url}/ui/login#`));
    const first = await signIn(out.url);
    assert.equal(first.status, 200);
    assert.match(first.cookie ?? '', /^__Host-edgeguard-ui=/);
    const again = await signIn(out.url);
    assert.equal(again.status, 401);
    assert.equal(again.cookie, undefined);
    assert.equal((await signIn(out.url)).status, 401);
    // One audit entry for the reused link, however often it is tried; the issue and the sign-in each have theirs.
    const log = plugins.audit.log!;
    await log.flush();
    const entries = (await log.getEntries(0, await log.size())).filter((e) => e.includes('"action":"ui.'));
    const count = (re: RegExp) => entries.filter((e) => re.test(e)).length;
    assert.equal(count(/"action":"ui.login".*"target":"carol".*"outcome":"denied"/), 1);
    assert.equal(count(/"action":"ui.login".*"outcome":"success"/), 1);
    assert.equal(count(/"action":"ui.link_issued".*"target":"carol"/), 1);
    const page = await inject({ method: 'GET', url: '/ui', headers: { cookie: first.cookie! } });
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /carol/);
  });

  it('admin ui-login over mutual TLS binds the session to the certificate; revoking it ends the session', async () => {
    const admin = await fleet.adminCredential('dave');
    const dir = mkdtempSync(join(tmpdir(), 'eg-ui-admin-'));
    writeFileSync(join(dir, 'admin.crt'), admin.cert);
    writeFileSync(join(dir, 'admin.key'), admin.key, { mode: 0o600 });
    writeFileSync(join(dir, 'ca.pem'), fleet.ca.rootPem);
    const r = await runCli([
      '--json',
      'admin',
      'ui-login',
      '--server',
      fleet.server.url,
      '--ca',
      join(dir, 'ca.pem'),
      '--client-cert',
      join(dir, 'admin.crt'),
      '--client-key',
      join(dir, 'admin.key'),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const { cookie } = await signIn((JSON.parse(r.stdout) as { url: string }).url);
    const before = await inject({ method: 'GET', url: '/ui/review', headers: { cookie: cookie! } });
    assert.equal(before.statusCode, 200);
    await fleet.server.ctx.store.revokeCertificate(admin.serial, 'keyCompromise');
    const afterRevoke = await inject({ method: 'GET', url: '/ui/review', headers: { cookie: cookie! } });
    assert.equal(afterRevoke.statusCode, 303);
    assert.equal(afterRevoke.headers.location, '/ui/login');
  });

  it('refuses an expired link', async () => {
    const link = await createUiLoginLink(fleet.server.ctx.store, {
      serverUrl: fleet.server.url,
      admin: 'erin',
      now: new Date(Date.now() - 10 * 60_000),
    });
    const r = await signIn(link.url);
    assert.equal(r.status, 401);
  });

  it('shows no page without a session, and sends the strict headers', async () => {
    for (const url of ['/ui', '/ui/guard', '/ui/review', '/ui/audit', '/ui/devices/dev-0123456789abcdef']) {
      const r = await inject({ method: 'GET', url, headers: { cookie: '__Host-edgeguard-ui=' + 'A'.repeat(43) } });
      assert.equal(r.statusCode, 303, url);
      assert.equal(r.headers.location, '/ui/login');
      assert.equal(r.headers['content-security-policy'], UI_CSP);
      assert.equal(r.headers['cache-control'], 'no-store');
    }
    const login = await inject({ method: 'GET', url: '/ui/login' });
    assert.equal(login.headers['x-frame-options'], 'DENY');
    assert.doesNotMatch(login.body, /<script>|style=/);
    assert.match(UI_CSP, /frame-ancestors 'none'/);
    assert.match(UI_CSP, /object-src 'none'/);
  });

  it('serves its own files and Chart.js with cache headers and ETags', async () => {
    const js = await inject({ method: 'GET', url: '/ui/assets/app.js' });
    assert.equal(js.statusCode, 200);
    assert.equal(js.headers['cache-control'], 'no-cache');
    const again = await inject({
      method: 'GET',
      url: '/ui/assets/app.js',
      headers: { 'if-none-match': js.headers.etag },
    });
    assert.equal(again.statusCode, 304);
    const guard = await signInPage('/ui/guard');
    const chart = /src="(\/ui\/assets\/chart-[0-9.]+\.umd\.min\.js)"/.exec(guard)?.[1];
    assert.ok(chart, 'the guard page loads Chart.js from this server');
    const c = await inject({ method: 'GET', url: chart });
    assert.equal(c.statusCode, 200);
    assert.match(String(c.headers['cache-control']), /immutable/);
    const missing = await inject({ method: 'GET', url: '/ui/assets/..%2Fpackage.json' });
    assert.equal(missing.statusCode, 404);
    assert.match(missing.body, /EG_NOT_FOUND/);
  });

  async function signInPage(url: string): Promise<string> {
    const link = await createUiLoginLink(fleet.server.ctx.store, { serverUrl: fleet.server.url, admin: 'frank' });
    const { cookie } = await signIn(link.url);
    return (await inject({ method: 'GET', url, headers: { cookie: cookie! } })).body;
  }

  it('escapes text from devices and refuses sign-out without the CSRF token', async () => {
    const dev = await fleet.deviceCredential();
    await fleet.server.ctx.store.db
      .updateTable('devices')
      .set({ label: '<script>alert(1)</script>' })
      .where('id', '=', dev.deviceId)
      .execute();
    const missing = await signInPage('/ui/devices/dev-0000000000000000');
    assert.match(missing, /<code>EG_NOT_FOUND<\/code>: no device dev-0000000000000000/);
    const body = await signInPage('/ui');
    assert.doesNotMatch(body, /<script>alert/);
    assert.match(body, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);

    const link = await createUiLoginLink(fleet.server.ctx.store, { serverUrl: fleet.server.url, admin: 'gina' });
    const { cookie } = await signIn(link.url);
    const forged = await inject({
      method: 'POST',
      url: '/ui/logout',
      headers: { cookie: cookie!, 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'csrf=wrong',
    });
    assert.equal(forged.statusCode, 403);
    const page = await inject({ method: 'GET', url: '/ui', headers: { cookie: cookie! } });
    const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)?.[1];
    const out = await inject({
      method: 'POST',
      url: '/ui/logout',
      headers: { cookie: cookie!, 'content-type': 'application/x-www-form-urlencoded' },
      payload: `csrf=${csrf}`,
    });
    assert.equal(out.statusCode, 303);
    assert.match(String(out.headers['set-cookie']), /Max-Age=0/);
    const gone = await inject({ method: 'GET', url: '/ui', headers: { cookie: cookie! } });
    assert.equal(gone.statusCode, 303);
  });

  it('answers any sign-in body with a 4xx EG_ error, never a session', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string(), fc.json(), fc.constant('{"token":1}')), async (payload) => {
        const r = await inject({
          method: 'POST',
          url: '/ui/login',
          headers: { 'content-type': 'application/json' },
          payload,
        });
        assert.ok(r.statusCode >= 400 && r.statusCode < 500, `${r.statusCode} for ${payload}`);
        assert.match(r.body, /"code":"EG_/);
        assert.equal(r.headers['set-cookie'], undefined);
      }),
      { numRuns: 60 },
    );
  });

  it('escapes every character that could open markup or leave an attribute', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const out = html`<p title="${s}">${s}</p>`.text;
        const inner = escapeHtml(s);
        assert.doesNotMatch(inner, /[<>"']/);
        assert.equal(out, `<p title="${inner}">${inner}</p>`);
      }),
    );
  });
});
