/**
 * The fleet dashboard in a real browser: Debian's chromium driven by playwright-core against a
 * real control plane (TLS, SQLite, the audit log signing checkpoints). Seeded: a device with an
 * attestation history, a checklist report with a failing item, guard verdicts and device events
 * in the audit log, a sealed review item. Checked: sign-in by one-time link (and its reuse
 * refused), each page, the failing check with its evidence, inclusion proofs verified in the
 * browser (and one whose entry was altered in the database shown failed), the chart drawn, no
 * console errors under the CSP, keyboard focus, an axe-core scan, sign-out. Screenshots of each
 * page go to EDGEGUARD_UI_SCREENSHOTS (docs/screenshots to refresh the README's) or a temp dir.
 *
 * Skipped only when /usr/bin/chromium is absent and CI is not set: in CI it must run.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { Kysely } from 'kysely';
import sharp from 'sharp';
import { controlPlanePlugins, createUiLoginLink } from '../../src/server/index.ts';
import { AttestationRecords } from '../../src/server/attestation/records.ts';
import { UI_CSP } from '../../src/server/routes/ui.ts';
import { buildReport, signReport, type CheckResult } from '../../src/checklist/index.ts';
import { publicKeyId, signingAlgorithmOf } from '../../src/crypto/index.ts';
import type { AuditEvent, AuditLog } from '../../src/audit/index.ts';
import { startTestFleet, type TestFleet } from './fleet-helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const skip =
  !existsSync(CHROMIUM) && process.env.CI !== 'true'
    ? `${CHROMIUM} is absent (apt-get install chromium); the dashboard's browser tests need it (they always run in CI)`
    : false;

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const SHOTS = process.env.EDGEGUARD_UI_SCREENSHOTS ?? mkdtempSync(join(tmpdir(), 'eg-ui-shots-'));

function results(failing: boolean): CheckResult[] {
  const ids = ['EG-01', 'EG-02', 'EG-03', 'EG-04', 'EG-05', 'EG-06', 'EG-07', 'EG-08', 'EG-09', 'EG-10'];
  return ids.map((id) =>
    id === 'EG-03' && failing
      ? {
          id,
          title: 'egress limited to the control plane',
          audit: 'the live nft ruleset of the device',
          status: 'FAIL',
          actual: 'table inet edgeguard has no rules (flushed)',
          expected: 'output policy drop, accept only the control plane',
          evidence: [
            { name: 'nft ruleset sha256', value: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' },
          ],
          remediation: 'run `edgeguard harden apply` to restore the egress rules',
        }
      : {
          id,
          title: `item ${id}`,
          audit: 'checked',
          status: 'PASS',
          actual: 'as expected',
          expected: 'as expected',
          evidence: [{ name: 'digest', value: randomBytes(32).toString('hex') }],
          remediation: 'none',
        },
  );
}

function deviceEvent(deviceId: string, type: 'guard.flagged' | 'guard.rejected', minutesAgo: number): AuditEvent {
  return {
    type,
    time: new Date(Date.now() - minutesAgo * 60_000).toISOString(),
    actor: { kind: 'device', id: deviceId },
    subject: deviceId,
    outcome: type === 'guard.rejected' ? 'denied' : 'success',
    details: {
      check: 'squeeze',
      score: 812_000,
      threshold: 400_000,
      queuedForReview: true,
      reasons: ['FEATURE_SQUEEZE'],
      model: minutesAgo % 40 === 0 ? 'digits@3' : 'sensors@1',
    },
  } as AuditEvent;
}

async function pixelsDrawn(page: Page, selector: string): Promise<number> {
  return page.$eval(selector, (el) => {
    const c = el as unknown as {
      width: number;
      height: number;
      getContext(k: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } };
    };
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i]! > 0) n++;
    return n;
  });
}

describe('fleet dashboard in a real browser', { skip }, () => {
  let fleet: TestFleet;
  let log: AuditLog;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let deviceId: string;
  const consoleErrors: string[] = [];

  before(async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'eg-ui-'));
    const plugins = controlPlanePlugins({ dataDir, checkpointIntervalMs: 0 });
    fleet = await startTestFleet({ dataDir, plugins: plugins.all });
    log = plugins.audit.log!;
    const device = await fleet.deviceCredential();
    deviceId = device.deviceId;
    await fleet.deviceCredential({ status: 'pending' });
    // The device uploads its signed checklist report, as `edgeguard checklist --upload` does.
    const privateKey = createPrivateKey(device.key);
    const publicKey = createPublicKey(privateKey);
    const signer = { algorithm: signingAlgorithmOf(privateKey), privateKey, publicKey, keyId: publicKeyId(publicKey) };
    const uploaded = await fleet
      .client(device)
      .send('POST', '/v1/checklist/reports', signReport(buildReport(results(true), {}), signer));
    assert.equal(uploaded.status, 200, JSON.stringify(uploaded.body));
    const records = new AttestationRecords(fleet.server.ctx.store.db);
    for (const [i, pass] of [false, true].entries()) {
      await records.recordVerdict(
        {
          id: randomBytes(16).toString('hex'),
          device_id: deviceId,
          pass: pass ? 1 : 0,
          reasons: JSON.stringify(pass ? [] : [{ code: 'PCR_MISMATCH', detail: 'PCR 7 differs' }]),
          policy_sha256: null,
          events: null,
          received_at: new Date(Date.now() - (2 - i) * 60_000).toISOString(),
        },
        pass ? new Date(Date.now() + 300_000).toISOString() : null,
      );
    }
    await log.append({
      type: 'model.loaded',
      time: new Date().toISOString(),
      actor: { kind: 'device', id: deviceId },
      subject: deviceId,
      outcome: 'success',
      details: { modelSha256: 'ab'.repeat(32), name: 'digits', keyProvider: 'tpm', version: 3 },
    });
    for (let m = 0; m < 12; m++)
      await log.append(deviceEvent(deviceId, m % 3 === 0 ? 'guard.rejected' : 'guard.flagged', m * 20));
    type Review = {
      review_items: {
        id: string;
        device_id: string;
        key_id: string;
        created_ms: number;
        received_at: string;
        size: number;
        item: string;
      };
    };
    await (fleet.server.ctx.store.db.withTables<Review>() as unknown as Kysely<Review>)
      .insertInto('review_items')
      .values({
        id: randomBytes(16).toString('hex'),
        device_id: deviceId,
        key_id: 'abcdef0123456789',
        created_ms: Date.now(),
        received_at: new Date().toISOString(),
        size: 4096,
        item: 'c2VhbGVk',
      })
      .execute();
    await log.publishCheckpoint();

    mkdirSync(SHOTS, { recursive: true });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
    });
    context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 800 } });
    page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(`${page.url()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
  });

  after(async () => {
    await browser?.close();
    await fleet?.stop();
    process.stdout.write(`# dashboard screenshots in ${SHOTS}\n`);
  });

  async function shot(name: string): Promise<void> {
    // A palette PNG: the screenshots are committed (docs/screenshots), so kept small.
    const png = await page.screenshot({ fullPage: true });
    await sharp(png)
      .png({ palette: true, colours: 64, compressionLevel: 9 })
      .toFile(join(SHOTS, `${name}.png`));
  }

  async function checkpointVerified(): Promise<void> {
    await page.waitForSelector('#checkpoint-state[data-verified]');
    const state = page.locator('#checkpoint-state');
    assert.equal(await state.getAttribute('data-verified'), 'true', (await state.textContent()) ?? '');
  }

  async function axeScan(path: string): Promise<void> {
    // The CSP is bypassed for the scanner's injection only, in a context of its own.
    const scanContext = await browser.newContext({
      ignoreHTTPSErrors: true,
      bypassCSP: true,
      storageState: await context.storageState(),
    });
    try {
      const p = await scanContext.newPage();
      await p.goto(`${fleet.server.url}${path}`);
      await p.addScriptTag({ path: createRequire(import.meta.url).resolve('axe-core/axe.min.js') });
      const result = (await p.evaluate('axe.run(document, { resultTypes: ["violations"] })')) as {
        violations: Array<{ id: string; impact: string; help: string; nodes: unknown[] }>;
      };
      const serious = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      assert.deepEqual(
        serious.map((v) => `${v.id} (${v.impact}): ${v.help}, ${v.nodes.length} nodes`),
        [],
        `axe-core on ${path}`,
      );
    } finally {
      await scanContext.close();
    }
  }

  it('sends a browser without a session to the sign-in page, under a strict CSP', async () => {
    const r = await page.goto(`${fleet.server.url}/ui`);
    assert.match(page.url(), /\/ui\/login$/);
    assert.equal(r?.headers()['content-security-policy'], UI_CSP);
    assert.match(UI_CSP, /script-src 'self'/);
    assert.match((await page.textContent('main')) ?? '', /edgeguard admin ui-login/);
    await shot('sign-in');
  });

  it('signs in with a one-time link and refuses the link a second time', async () => {
    const link = await createUiLoginLink(fleet.server.ctx.store, { serverUrl: fleet.server.url, admin: 'alice' });
    await page.goto(link.url);
    await page.waitForURL(`${fleet.server.url}/ui`);
    assert.equal(await page.textContent('h1'), 'Fleet');
    const cookie = (await context.cookies()).find((c) => c.name.startsWith('__Host-'));
    assert.ok(cookie?.httpOnly && cookie.secure && cookie.sameSite === 'Strict', JSON.stringify(cookie));

    const other = await browser.newContext({ ignoreHTTPSErrors: true });
    try {
      const p = await other.newPage();
      await p.goto(link.url);
      await p.waitForSelector('#signin.error');
      assert.match((await p.textContent('#signin')) ?? '', /not valid: it was used already/);
      await p.goto(`${fleet.server.url}/ui`);
      assert.match(p.url(), /\/ui\/login$/);
    } finally {
      await other.close();
    }
  });

  it('links issued over mutual TLS work once too (POST /v1/ui/login-links)', async () => {
    const admin = await fleet.adminCredential('bob');
    const r = await fleet.client(admin).call<{ url: string; expiresAt: string }>('POST', '/v1/ui/login-links');
    assert.match(r.body.url, /\/ui\/login#[A-Za-z0-9_-]{43}$/);
    assert.ok(Date.parse(r.body.expiresAt) - Date.now() <= 5 * 60_000);
  });

  it('shows the fleet overview: states, attestation, checklist score, certificate expiry', async () => {
    await page.goto(`${fleet.server.url}/ui`);
    const row = page.locator('tr', { has: page.locator(`a[href="/ui/devices/${deviceId}"]`) });
    const text = (await row.textContent()) ?? '';
    assert.match(text, /approved/);
    assert.match(text, /passing, fresh/);
    assert.match(text, /failing: EG-03/);
    assert.match(text, /digits v3/);
    assert.match(text, /\d+ d/);
    await shot('overview');
  });

  it('shows a device: the failing check with its evidence, attestation history, proofs verified in the browser', async () => {
    await page.click(`a[href="/ui/devices/${deviceId}"]`);
    await page.waitForURL(`**/ui/devices/${deviceId}`);
    const check = (await page.textContent('#check-EG-03')) ?? '';
    assert.match(check, /FAIL/);
    assert.match(check, /e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/);
    assert.match(check, /edgeguard harden apply/);
    assert.match((await page.textContent('#attest-h + table')) ?? '', /PCR_MISMATCH/);
    await checkpointVerified();
    const cells = page.locator('[data-proof-index]');
    // The seeded events about the device, and its checklist upload (checklist.reported).
    assert.equal(await cells.count(), 14);
    await page.waitForFunction(() => {
      const d = (globalThis as unknown as { document: { querySelectorAll(s: string): ArrayLike<unknown> } }).document;
      return d.querySelectorAll('[data-proof-index][data-verified="true"]').length === 14;
    });
    await shot('device');
  });

  it('shows an entry altered in the database as failing its proof', async () => {
    type Entries = { audit_entries: { idx: number; leaf: string } };
    const db = fleet.server.ctx.store.db.withTables<Entries>() as unknown as Kysely<Entries>;
    const text = (leaf: string | Uint8Array) => (typeof leaf === 'string' ? leaf : Buffer.from(leaf).toString('utf8'));
    const rows = await db.selectFrom('audit_entries').select(['idx', 'leaf']).execute();
    const row = rows.find((r) => text(r.leaf).includes('"score":812000'))!;
    const index = row.idx;
    const leaf = text(row.leaf);
    const altered = leaf.replace('"score":812000', '"score":100000');
    assert.notEqual(altered, leaf);
    await db.updateTable('audit_entries').set({ leaf: altered }).where('idx', '=', index).execute();
    try {
      await page.reload();
      await page.waitForSelector(`[data-proof-index="${index}"][data-verified="false"]`);
      assert.match((await page.textContent(`[data-proof-index="${index}"]`)) ?? '', /FAILED/);
      assert.equal(await page.locator('[data-proof-index][data-verified="true"]').count(), 13);
      await shot('device-tampered');
    } finally {
      await db.updateTable('audit_entries').set({ leaf }).where('idx', '=', index).execute();
    }
  });

  it('draws the guard activity chart', async () => {
    await page.goto(`${fleet.server.url}/ui/guard`);
    await page.waitForSelector('#guard-chart');
    assert.ok((await pixelsDrawn(page, '#guard-chart')) > 1000, 'the chart canvas has pixels');
    await shot('guard');
  });

  it('shows the review queue as counts only and the audit log state', async () => {
    await page.goto(`${fleet.server.url}/ui/review`);
    assert.match((await page.textContent('main')) ?? '', /1\s+items waiting/);
    await shot('review');
    await page.goto(`${fleet.server.url}/ui/audit`);
    await checkpointVerified();
    assert.match((await page.textContent('main')) ?? '', /consistent with the latest checkpoint/);
    await page.waitForSelector('#consistency-state[data-verified="true"]');
    assert.match((await page.textContent('#consistency-state')) ?? '', /First visit/);
    // The log grows; the browser checks the new checkpoint against the one it remembered.
    await log.append(deviceEvent(deviceId, 'guard.flagged', 1));
    await log.publishCheckpoint();
    await page.reload();
    await checkpointVerified();
    await page.waitForSelector('#consistency-state[data-verified]');
    assert.match(
      (await page.textContent('#consistency-state')) ?? '',
      /Consistent with the checkpoint this browser saw before/,
    );
    await shot('audit');
  });

  it('can be used with the keyboard: Tab reaches the links, focus is visible', async () => {
    await page.goto(`${fleet.server.url}/ui`);
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      await page.keyboard.press('Tab');
      const focus = await page.evaluate(() => {
        const d = (globalThis as unknown as { document: { activeElement: { tagName: string; textContent: string } } })
          .document;
        const el = d.activeElement;
        const style = (
          globalThis as unknown as { getComputedStyle(e: unknown): { outlineStyle: string; outlineWidth: string } }
        ).getComputedStyle(el);
        return { tag: el.tagName, text: el.textContent.trim(), outline: `${style.outlineStyle} ${style.outlineWidth}` };
      });
      assert.ok(!focus.outline.startsWith('none'), `focus on ${focus.text} is visible (${focus.outline})`);
      seen.push(focus.text);
    }
    assert.deepEqual(seen.slice(0, 5), ['Skip to content', 'Fleet', 'Guard activity', 'Review queue', 'Audit log']);
  });

  it('passes an axe-core scan on every page with no serious or critical violation', async () => {
    for (const path of ['/ui/login', '/ui', `/ui/devices/${deviceId}`, '/ui/guard', '/ui/review', '/ui/audit'])
      await axeScan(path);
  });

  it('logged no console error on any page', () => {
    assert.deepEqual(consoleErrors, []);
  });

  it('signs out with the form (CSRF token) and refuses a sign-out without it', async () => {
    const forged = await page.request.post(`${fleet.server.url}/ui/logout`, { form: { csrf: 'x'.repeat(43) } });
    assert.equal(forged.status(), 403);
    await page.goto(`${fleet.server.url}/ui`);
    await page.click('button:has-text("Sign out")');
    await page.waitForURL(/\/ui\/login$/);
    await page.goto(`${fleet.server.url}/ui/review`);
    assert.match(page.url(), /\/ui\/login$/);
    const events = await log.getEntries(0, await log.size());
    const actions = events.filter((e) => e.includes('"action":"ui.'));
    assert.ok(actions.some((e) => e.includes('"action":"ui.login"') && e.includes('"outcome":"success"')));
    assert.ok(actions.some((e) => e.includes('"action":"ui.login"') && e.includes('"outcome":"denied"')));
    assert.ok(actions.some((e) => e.includes('"action":"ui.logout"')));
  });
});
