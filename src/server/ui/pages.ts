/**
 * The dashboard's pages, rendered on the server from DashboardData (data.ts) with the escaping
 * `html` helper. Pages hold no inline script or style (the CSP forbids both): the client script
 * (ui/app.js) finds its data in `<script type="application/json">` elements and the cells it
 * fills by their data-* attributes.
 */
import type { StoredCheckpoint } from '../../audit/index.ts';
import type { DeviceRecord } from '../../store/index.ts';
import { html, jsonData, type SafeHtml } from './html.ts';
import type { AuditItem, DeviceSummary, StoredChecklistReport } from './data.ts';
import type { UiSession } from './sessions.ts';

export const ASSETS = '/ui/assets';

export interface PageFrame {
  title: string;
  /** The nav entry to mark as current. */
  current: 'fleet' | 'guard' | 'review' | 'audit' | 'device' | 'login';
  session: UiSession | undefined;
  chartScript?: string;
}

const NAV: Array<[PageFrame['current'], string, string]> = [
  ['fleet', '/ui', 'Fleet'],
  ['guard', '/ui/guard', 'Guard activity'],
  ['review', '/ui/review', 'Review queue'],
  ['audit', '/ui/audit', 'Audit log'],
];

export function layout(frame: PageFrame, body: SafeHtml): string {
  const nav = frame.session
    ? html`<nav aria-label="Dashboard">
          <ul>
            ${NAV.map(
              ([key, href, label]) =>
                html`<li><a href="${href}" ${key === frame.current ? html`aria-current="page"` : ''}>${label}</a></li>`,
            )}
          </ul>
        </nav>
        <form method="post" action="/ui/logout" class="signout">
          <input type="hidden" name="csrf" value="${frame.session.csrfToken}" />
          <span>${frame.session.admin}</span>
          <button type="submit">Sign out</button>
        </form>`
    : '';
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${frame.title} · edgeguard</title>
        <link rel="icon" href="${ASSETS}/favicon.svg" type="image/svg+xml" />
        <link rel="stylesheet" href="${ASSETS}/app.css" />
        ${frame.chartScript ? html`<script src="${frame.chartScript}" defer></script>` : ''}
        <script type="module" src="${ASSETS}/app.js"></script>
      </head>
      <body>
        <a class="skip" href="#main">Skip to content</a>
        <header>
          <span class="brand">edgeguard</span>
          ${nav}
        </header>
        <main id="main">
          <h1>${frame.title}</h1>
          ${body}
        </main>
      </body>
    </html>`.text;
}

export function errorPage(code: string, message: string): SafeHtml {
  return html`<p role="alert"><code>${code}</code>: ${message}</p>
    <p><a href="/ui">Back to the fleet</a></p>`;
}

export function loginPage(): SafeHtml {
  return html`<div id="signin" role="status">
      <p>Sign in with a one-time link: run <code>edgeguard admin ui-login</code> and open the link it prints.</p>
    </div>
    <p>A link works once, for five minutes; the session it opens lasts thirty minutes.</p>`;
}

const DAY_MS = 86_400_000;

function thead(...columns: string[]): SafeHtml {
  return html`<thead>
    <tr>
      ${columns.map((c) => html`<th scope="col">${c}</th>`)}
    </tr>
  </thead>`;
}

function when(iso: string | null | undefined): SafeHtml {
  if (!iso) return html`<span class="muted">never</span>`;
  return html`<time datetime="${iso}">${iso.slice(0, 19).replace('T', ' ')} UTC</time>`;
}

function badge(kind: 'ok' | 'bad' | 'warn' | 'muted', text: string): SafeHtml {
  return html`<span class="badge ${kind}">${text}</span>`;
}

function statusBadge(status: DeviceRecord['status']): SafeHtml {
  return badge(status === 'approved' ? 'ok' : status === 'pending' ? 'warn' : 'bad', status);
}

function attestationCell(a: DeviceSummary['attestation'], now: number): SafeHtml {
  if (!a) return badge('muted', 'no evidence');
  const fresh = a.pass && a.trustedUntil !== null && Date.parse(a.trustedUntil) > now;
  const label = a.pass ? (fresh ? 'passing, fresh' : 'passing, stale') : 'failed';
  return html`${badge(fresh ? 'ok' : a.pass ? 'warn' : 'bad', label)} ${when(a.at)}`;
}

function expiryCell(notAfter: string | undefined, now: number): SafeHtml {
  if (!notAfter) return badge('muted', 'none');
  const days = Math.floor((Date.parse(notAfter) - now) / DAY_MS);
  const kind = days < 0 ? 'bad' : days < 7 ? 'warn' : 'ok';
  return html`${badge(kind, days < 0 ? 'expired' : `${days} d`)} ${when(notAfter)}`;
}

function checklistCell(c: DeviceSummary['checklist']): SafeHtml {
  if (!c) return badge('muted', 'no report');
  return html`${badge(c.failing.length > 0 ? 'bad' : 'ok', `${c.score}/100`)}
  ${c.failing.length > 0 ? html`<span class="failing">failing: ${c.failing.join(', ')}</span>` : ''}`;
}

export function overviewPage(devices: readonly DeviceSummary[], now = Date.now()): SafeHtml {
  const byState = new Map<string, number>();
  for (const d of devices) byState.set(d.device.status, (byState.get(d.device.status) ?? 0) + 1);
  const states = ['approved', 'pending', 'revoked', 'tampered'];
  return html`<section aria-labelledby="states-h">
      <h2 id="states-h">Devices by state</h2>
      <ul class="tiles">
        ${states.map((s) => html`<li><span class="count">${byState.get(s) ?? 0}</span> ${s}</li>`)}
      </ul>
    </section>
    <section aria-labelledby="devices-h">
      <h2 id="devices-h">Devices</h2>
      ${
        devices.length === 0
          ? html`<p>No device has enrolled yet.</p>`
          : html`<table>
              ${thead('Device', 'State', 'Attestation', 'Checklist', 'Models', 'Certificate expiry')}
              <tbody>
                ${devices.map(
                  (d) =>
                    html`<tr>
                      <th scope="row">
                        <a href="/ui/devices/${d.device.id}">${d.device.id}</a>
                        ${d.device.label ? html`<br /><span class="muted">${d.device.label}</span>` : ''}
                      </th>
                      <td>${statusBadge(d.device.status)} ${d.device.key_provider}</td>
                      <td>${attestationCell(d.attestation, now)}</td>
                      <td>${checklistCell(d.checklist)}</td>
                      <td>${d.models.length > 0 ? d.models.join(', ') : html`<span class="muted">unknown</span>`}</td>
                      <td>${expiryCell(d.certificateNotAfter, now)}</td>
                    </tr>`,
                )}
              </tbody>
            </table>`
      }
    </section>`;
}

function checklistSection(stored: StoredChecklistReport | undefined): SafeHtml {
  if (!stored) return html`<p>No report: this device has not uploaded a checklist report.</p>`;
  const results = stored.report.controls.flatMap((c) => c.tests.flatMap((t) => t.results));
  const kind = (s: string) => (s === 'PASS' ? 'ok' : s === 'FAIL' ? 'bad' : s === 'WARN' ? 'warn' : 'muted');
  return html`<p>
      Score ${badge(stored.report.score >= 80 ? 'ok' : 'warn', `${stored.report.score}/100`)}, generated
      ${when(stored.report.generatedAt)}, received ${when(stored.receivedAt)}
      ${stored.sha256 ? html`, report SHA-256 <code class="digest">${stored.sha256}</code>` : ''}
    </p>
    <table class="checklist">
      ${thead('Item', 'Status', 'Actual / expected', 'Evidence', 'Remediation')}
      <tbody>
        ${results.map(
          (r) =>
            html`<tr id="check-${r.id}" class="status-${r.status}">
              <th scope="row">${r.id}<br /><span class="muted">${r.desc}</span></th>
              <td>${badge(kind(r.status), r.status)}</td>
              <td>${r.actual}<br /><span class="muted">expected: ${r.expected}</span></td>
              <td>
                <ul class="evidence">
                  ${r.evidence.map(
                    (e) =>
                      html`<li>
                        <strong>${e.name}</strong>: <code>${e.value}</code>${e.path ? html` (${e.path})` : ''}
                      </li>`,
                  )}
                </ul>
              </td>
              <td>${r.status === 'PASS' ? '' : r.remediation}</td>
            </tr>`,
        )}
      </tbody>
    </table>`;
}

/** Proofs the client script checks, with the checkpoint they lead to and the pinned log key. */
export interface ProofBundle {
  logKey: string;
  checkpoint: string | undefined;
  proofs: Array<{ index: number; leaf: string; proof: string[] }>;
}

function auditTable(items: readonly AuditItem[], caption: string): SafeHtml {
  if (items.length === 0) return html`<p>No signed audit entries yet.</p>`;
  return html`<table class="audit">
    <caption>
      ${caption}
    </caption>
    ${thead('Index', 'Time', 'Event', 'Outcome', 'Inclusion proof')}
    <tbody>
      ${items.map(
        (it) =>
          html`<tr>
            <th scope="row">${it.index}</th>
            <td>${it.leaf ? when(it.leaf.event.time) : ''}</td>
            <td>
              ${
                it.leaf
                  ? html`<code>${it.leaf.event.type}</code>
                      ${it.leaf.event.type === 'admin.action' ? html`<code>${it.leaf.event.details.action}</code>` : ''}
                      by ${it.leaf.event.actor.kind} ${it.leaf.event.actor.id}`
                  : html`<span class="bad">unreadable entry</span>`
              }
            </td>
            <td>${it.leaf?.event.outcome ?? ''}</td>
            <td class="proof" data-proof-index="${it.index}"><span class="muted">checking in your browser…</span></td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

export function devicePage(o: {
  device: DeviceRecord;
  checklist: StoredChecklistReport | undefined;
  history: Array<{ pass: boolean; at: string; reasons: string[] }>;
  events: readonly AuditItem[];
  proofs: ProofBundle;
  reviewItems: number;
}): SafeHtml {
  const d = o.device;
  return html`<dl class="facts">
      <dt>State</dt>
      <dd>${statusBadge(d.status)}</dd>
      <dt>Key provider</dt>
      <dd>${d.key_provider}</dd>
      <dt>EK SHA-256</dt>
      <dd><code class="digest">${d.ek_pub_sha256}</code></dd>
      <dt>Enrolled</dt>
      <dd>${when(d.created_at)}</dd>
      <dt>Last seen</dt>
      <dd>${when(d.last_seen_at)}</dd>
      <dt>Sealed review items</dt>
      <dd>${o.reviewItems}</dd>
    </dl>
    <section aria-labelledby="checklist-h">
      <h2 id="checklist-h">Checklist</h2>
      ${checklistSection(o.checklist)}
    </section>
    <section aria-labelledby="attest-h">
      <h2 id="attest-h">Attestation history</h2>
      ${
        o.history.length === 0
          ? html`<p>No attestation evidence received.</p>`
          : html`<table>
              ${thead('Received', 'Verdict', 'Reasons')}
              <tbody>
                ${o.history.map(
                  (h) =>
                    html`<tr>
                      <td>${when(h.at)}</td>
                      <td>${badge(h.pass ? 'ok' : 'bad', h.pass ? 'pass' : 'fail')}</td>
                      <td>${h.reasons.join(', ')}</td>
                    </tr>`,
                )}
              </tbody>
            </table>`
      }
    </section>
    <section aria-labelledby="events-h">
      <h2 id="events-h">Audit events about this device</h2>
      ${proofSummary()} ${auditTable(o.events, 'Newest first; each proof is checked against the signed checkpoint')}
      ${jsonData('audit-proofs', o.proofs)}
    </section>`;
}

function proofSummary(): SafeHtml {
  return html`<p id="checkpoint-state" class="muted" role="status">Checking the checkpoint signature…</p>`;
}

export function guardPage(activity: { hours: string[]; series: unknown[] }, total: number): SafeHtml {
  return html`<p>Guard verdicts the devices reported (flagged and rejected inputs), per model and hour.</p>
    ${
      total === 0
        ? html`<p>No guard verdicts in the audit log yet.</p>`
        : html`<figure>
            <canvas id="guard-chart" role="img" aria-label="Guard verdicts per model and hour" width="800" height="320"
              >Guard verdicts per model and hour</canvas
            >
            <figcaption>${total} verdicts in the latest entries of the audit log.</figcaption>
          </figure>`
    }
    ${jsonData('guard-activity', activity)}`;
}

export function reviewPage(c: {
  total: number;
  bytes: number;
  oldest: string | undefined;
  byDevice: Map<string, number>;
}): SafeHtml {
  return html`<p>
      Items wait here sealed to the review key; the server cannot read them. Fetch them with
      <code>edgeguard review fetch</code>.
    </p>
    <ul class="tiles">
      <li><span class="count">${c.total}</span> items waiting</li>
      <li><span class="count">${Math.ceil(c.bytes / 1024)}</span> KiB sealed</li>
    </ul>
    <p>Oldest item received ${when(c.oldest)}.</p>
    ${
      c.byDevice.size === 0
        ? ''
        : html`<table>
            ${thead('Device', 'Items')}
            <tbody>
              ${[...c.byDevice.entries()].map(
                ([id, n]) =>
                  html`<tr>
                    <th scope="row"><a href="/ui/devices/${id}">${id}</a></th>
                    <td>${n}</td>
                  </tr>`,
              )}
            </tbody>
          </table>`
    }`;
}

export function auditPage(o: {
  checkpoint: StoredCheckpoint | undefined;
  logKey: string;
  behind: { stored: number; signed: number } | undefined;
  entries: readonly AuditItem[];
  proofs: ProofBundle;
}): SafeHtml {
  const cp = o.checkpoint;
  return html`<dl class="facts">
      <dt>Log key (pinned)</dt>
      <dd><code class="digest">${o.logKey}</code></dd>
      <dt>Tree size</dt>
      <dd>${cp?.size ?? 0}</dd>
      <dt>Root hash</dt>
      <dd><code class="digest">${cp ? cp.root.toString('base64') : 'none yet'}</code></dd>
      <dt>Store</dt>
      <dd>
        ${
          o.behind
            ? badge('bad', `holds ${o.behind.stored} entries, a checkpoint was signed at ${o.behind.signed}`)
            : badge('ok', 'consistent with the latest checkpoint')
        }
      </dd>
    </dl>
    ${proofSummary()}
    <p id="consistency-state" class="muted" role="status">Checking against the checkpoint this browser saw before…</p>
    <h2>Latest checkpoint</h2>
    <pre class="note">${cp?.note ?? 'none signed yet'}</pre>
    <h2>Latest entries</h2>
    ${auditTable(o.entries, 'Newest first')} ${jsonData('audit-proofs', o.proofs)}`;
}
