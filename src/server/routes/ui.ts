/**
 * The fleet dashboard (a server plugin, see ../README-extending.md), HTML pages under /ui:
 *
 *   GET  /ui/login                  anyone    the sign-in page (its script posts the link's token)
 *   POST /ui/login                  anyone    { token } -> a session cookie, or 401
 *   POST /ui/logout                 session   form with the session's CSRF token
 *   GET  /ui, /ui/devices/:id, /ui/guard, /ui/review, /ui/audit   session  pages
 *   GET  /ui/assets/:name           anyone    the client script, style sheet and Chart.js
 *   POST /v1/ui/login-links         admin     a one-time sign-in link for the calling admin
 *
 * A browser has no client certificate: the TLS layer asks for one without requiring it (app.ts),
 * and these routes take the session cookie instead (ui/sessions.ts). Every page without a session
 * redirects to the sign-in page; every answer carries a strict CSP (no inline script or style,
 * nothing from another origin, no framing). The pages are hidden from the OpenAPI document (they
 * are not an API); the two JSON routes, sign-in and the link route, are in it. Sign-ins, the first
 * refusal of a real link and sign-outs are audit events (admin.action).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { formatVerifierKey, type AuditLog, type StoredCheckpoint } from '../../audit/index.ts';
import { EdgeguardError } from '../../errors/index.ts';
import { DEVICE_ID_RE } from '../../pki/index.ts';
import type { ControlPlaneContext } from '../context.ts';
import { ERROR_SCHEMA, errorHandler, errorReply } from '../errors.ts';
import type { ServerPlugin } from '../plugins.ts';
import { loadAssets, type Asset } from '../ui/assets.ts';
import { DashboardData, guardActivity, isAboutDevice, type AuditItem, type ChecklistReportSource } from '../ui/data.ts';
import {
  auditPage,
  devicePage,
  errorPage,
  guardPage,
  layout,
  loginPage,
  overviewPage,
  reviewPage,
  type PageFrame,
  type ProofBundle,
} from '../ui/pages.ts';
import {
  createUiLoginLink,
  csrfTokenMatches,
  UiSessions,
  UI_SESSION_COOKIE,
  UI_LOGIN_PATH,
  type UiSession,
} from '../ui/sessions.ts';

export interface UiPluginOptions {
  /** The audit log (the audit plugin's, once registered). */
  auditLog: () => AuditLog | undefined;
  /** Where checklist reports are kept; without it every device shows "no report". */
  checklistReports?: ChecklistReportSource;
  /** The URL sign-in links point to; else https:// and the Host the admin called. */
  publicUrl?: string;
}

export const UI_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const PROOFS_PER_PAGE = 25;

declare module 'fastify' {
  interface FastifyRequest {
    /** The dashboard session, set by the /ui pages' session check. */
    uiSession?: UiSession;
  }
}

function cookieValue(req: FastifyRequest, name: string): string | undefined {
  const header = req.headers.cookie;
  if (typeof header !== 'string') return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function sessionCookie(value: string, maxAgeS: number): string {
  return `${UI_SESSION_COOKIE}=${value}; Path=/; Max-Age=${maxAgeS}; HttpOnly; Secure; SameSite=Strict`;
}

function sendPage(reply: FastifyReply, frame: PageFrame, body: Parameters<typeof layout>[1]): FastifyReply {
  return reply.type('text/html; charset=utf-8').send(layout(frame, body));
}

export function uiServerPlugin(o: UiPluginOptions): ServerPlugin {
  return {
    name: 'ui',
    async register(app, ctx) {
      const sessions = new UiSessions(ctx.store);
      const data = new DashboardData(ctx.store, o.auditLog, o.checklistReports);
      const { assets, chartPath } = loadAssets();
      const timer = setInterval(
        () => void sessions.prune().catch((err: unknown) => ctx.log.error({ err }, 'pruning ui sessions failed')),
        10 * 60_000,
      );
      timer.unref();
      app.addHook('onClose', async () => clearInterval(timer));
      registerLinkRoute(app, ctx, o);
      // Its own scope: the form parser and the headers apply to /ui only.
      await app.register(async (scope) => {
        scope.addContentTypeParser(
          'application/x-www-form-urlencoded',
          { parseAs: 'string', bodyLimit: 4096 },
          (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
        );
        scope.addHook('onSend', async (_req, reply, payload) => {
          void reply.header('content-security-policy', UI_CSP);
          void reply.header('x-content-type-options', 'nosniff');
          void reply.header('referrer-policy', 'no-referrer');
          void reply.header('x-frame-options', 'DENY');
          void reply.header('cross-origin-opener-policy', 'same-origin');
          if (!reply.hasHeader('cache-control')) void reply.header('cache-control', 'no-store');
          return payload;
        });
        scope.setErrorHandler((error: Error, req, reply) => {
          // A page a person opened fails as a page; the JSON routes and the files keep the EG_ body.
          const { status, code } = errorReply(error);
          if (req.method !== 'GET' || req.url.startsWith('/ui/assets/') || status >= 500)
            return errorHandler(error, req, reply);
          const message = error instanceof EdgeguardError ? error.message : 'the request is invalid.';
          void reply
            .status(status)
            .type('text/html; charset=utf-8')
            .send(
              layout({ title: 'Not available', current: 'device', session: req.uiSession }, errorPage(code, message)),
            );
        });
        registerAssetRoutes(scope, assets);
        registerSignIn(scope, ctx, sessions);
        registerPages(scope, ctx, sessions, data, chartPath);
      });
    },
  };
}

function registerAssetRoutes(app: FastifyInstance, assets: ReadonlyMap<string, Asset>): void {
  app.get('/ui/assets/:name', { schema: { hide: true } }, async (req, reply) => {
    const a = assets.get((req.params as { name: string }).name);
    if (!a) throw new EdgeguardError('EG_NOT_FOUND', 'no such dashboard file.');
    void reply.header('cache-control', a.cacheControl).header('etag', a.etag);
    if (req.headers['if-none-match'] === a.etag) return reply.status(304).send();
    return reply.type(a.type).send(a.body);
  });
}

function registerSignIn(app: FastifyInstance, ctx: ControlPlaneContext, sessions: UiSessions): void {
  app.get(UI_LOGIN_PATH, { schema: { hide: true } }, async (req, reply) =>
    sendPage(reply, { title: 'Sign in', current: 'login', session: undefined }, loginPage()),
  );

  app.post(
    UI_LOGIN_PATH,
    {
      // A token cannot be guessed (256 bits); the limit bounds the database work of a flood.
      config: { rateLimit: { max: 60, timeWindow: 60_000 } },
      schema: {
        tags: ['ui'],
        summary:
          "Redeem a one-time dashboard sign-in link's token (the fragment of the link `edgeguard admin ui-login` prints) for a session cookie; the sign-in page's script calls this",
        body: {
          type: 'object',
          required: ['token'],
          additionalProperties: false,
          properties: { token: { type: 'string', maxLength: 100 } },
        },
        response: {
          200: {
            type: 'object',
            required: ['ok', 'next'],
            additionalProperties: false,
            properties: { ok: { type: 'boolean' }, next: { type: 'string' } },
          },
          400: ERROR_SCHEMA,
          401: ERROR_SCHEMA,
          429: ERROR_SCHEMA,
        },
      },
    },
    async (req, reply) => {
      const r = await sessions.redeem((req.body as { token: string }).token);
      if ('refused' in r) {
        ctx.metrics.authRefusals.inc({ reason: `ui_link_${r.refused}` });
        if (r.firstForLink)
          await ctx.events.emit('admin.action', {
            actor: { kind: 'operator', id: 'anonymous' },
            outcome: 'denied',
            details: {
              action: 'ui.login',
              ...(r.admin ? { target: r.admin } : {}),
              detail: `sign-in link refused: ${r.refused}`,
            },
          });
        throw new EdgeguardError(
          'EG_UNAUTHORIZED',
          'this sign-in link is not valid: it was used already, has expired or was never issued. Run `edgeguard admin ui-login` for a new one.',
          { details: { reason: r.refused } },
        );
      }
      await ctx.events.emit('admin.action', {
        actor: { kind: 'admin', id: r.session.admin },
        outcome: 'success',
        details: {
          action: 'ui.login',
          ...(r.session.adminSerial ? { target: r.session.adminSerial } : {}),
          detail: `dashboard session until ${r.session.expiresAt}`,
        },
      });
      const maxAge = Math.floor((Date.parse(r.session.expiresAt) - Date.now()) / 1000);
      return reply.header('set-cookie', sessionCookie(r.sessionId, maxAge)).send({ ok: true, next: '/ui' });
    },
  );

  app.post('/ui/logout', { schema: { hide: true } }, async (req, reply) => {
    const id = cookieValue(req, UI_SESSION_COOKIE);
    const session = await sessions.lookup(id);
    const csrf = (req.body as Record<string, unknown> | undefined)?.csrf;
    if (!session || !csrfTokenMatches(session, csrf))
      throw new EdgeguardError('EG_FORBIDDEN', 'sign-out refused: the form did not come from your dashboard session.');
    await sessions.end(id!);
    await ctx.events.emit('admin.action', {
      actor: { kind: 'admin', id: session.admin },
      outcome: 'success',
      details: { action: 'ui.logout' },
    });
    return reply.header('set-cookie', sessionCookie('', 0)).redirect(UI_LOGIN_PATH, 303);
  });
}

function registerPages(
  app: FastifyInstance,
  ctx: ControlPlaneContext,
  sessions: UiSessions,
  data: DashboardData,
  chartPath: string,
): void {
  const requireSession = async (req: FastifyRequest, reply: FastifyReply) => {
    const session = await sessions.lookup(cookieValue(req, UI_SESSION_COOKIE));
    if (!session) return reply.redirect(UI_LOGIN_PATH, 303);
    req.uiSession = session;
  };
  const page = (req: FastifyRequest, title: string, current: PageFrame['current']): PageFrame => ({
    title,
    current,
    session: req.uiSession,
  });
  const opts = { schema: { hide: true }, onRequest: requireSession };

  app.get('/ui', opts, async (req, reply) =>
    sendPage(reply, page(req, 'Fleet', 'fleet'), overviewPage(await data.deviceSummaries())),
  );

  app.get(
    '/ui/devices/:id',
    { ...opts, schema: { hide: true, params: { type: 'object', properties: { id: { type: 'string' } } } } },
    async (req, reply) => {
      const id = (req.params as { id: string }).id;
      const device = DEVICE_ID_RE.test(id) ? await ctx.store.getDevice(id) : undefined;
      if (!device) throw new EdgeguardError('EG_NOT_FOUND', `no device ${id}.`);
      const events = await data.recentEntries((l) => isAboutDevice(l, id), PROOFS_PER_PAGE);
      const body = devicePage({
        device,
        checklist: await data.checklistReport(id),
        history: await data.attestationHistory(id),
        events,
        proofs: await proofBundle(data, events),
        reviewItems: (await data.reviewCounts()).byDevice.get(id) ?? 0,
      });
      return sendPage(reply, page(req, `Device ${id}`, 'device'), body);
    },
  );

  app.get('/ui/guard', opts, async (req, reply) => {
    const items = await data.recentEntries(
      (l) => l.event.type === 'guard.flagged' || l.event.type === 'guard.rejected',
      5000,
    );
    return sendPage(
      reply,
      { ...page(req, 'Guard activity', 'guard'), chartScript: chartPath },
      guardPage(guardActivity(items), items.length),
    );
  });

  app.get('/ui/review', opts, async (req, reply) =>
    sendPage(reply, page(req, 'Review queue', 'review'), reviewPage(await data.reviewCounts())),
  );

  app.get('/ui/audit', opts, async (req, reply) => {
    const entries = await data.recentEntries(() => true, PROOFS_PER_PAGE);
    const proofs = await proofBundle(data, entries);
    const log = data.log();
    const body = auditPage({
      checkpoint: await data.checkpoint(),
      logKey: proofs.logKey,
      behind: await log?.storeBehindCheckpoint(),
      entries,
      proofs,
    });
    return sendPage(reply, page(req, 'Audit log', 'audit'), body);
  });
}

/** The entries' inclusion proofs in the tree of the latest checkpoint, for the browser to check. */
async function proofBundle(data: DashboardData, items: readonly AuditItem[]): Promise<ProofBundle> {
  const log = data.log();
  const checkpoint: StoredCheckpoint | undefined = await data.checkpoint();
  if (!log || !checkpoint)
    return { logKey: log ? formatVerifierKey(log.verifier) : '', checkpoint: undefined, proofs: [] };
  const proofs = await Promise.all(
    items.map(async (it) => {
      const p = await log.inclusionProof(it.index, checkpoint.size);
      return { index: it.index, leaf: it.leafBase64, proof: p.proof.map((h) => h.toString('base64')) };
    }),
  );
  return { logKey: formatVerifierKey(log.verifier), checkpoint: checkpoint.note, proofs };
}

/** POST /v1/ui/login-links: an admin with a client certificate asks for a sign-in link for themself. */
function registerLinkRoute(app: FastifyInstance, ctx: ControlPlaneContext, o: UiPluginOptions): void {
  app.post(
    '/v1/ui/login-links',
    {
      onRequest: ctx.requireAdmin,
      schema: {
        tags: ['ui'],
        summary:
          "A one-time dashboard sign-in link (5 minutes) for the calling admin; the session it opens is bound to the admin's certificate",
        security: [{ adminCertificate: [] }],
        response: {
          200: {
            type: 'object',
            required: ['url', 'expiresAt'],
            additionalProperties: false,
            properties: { url: { type: 'string' }, expiresAt: { type: 'string' } },
          },
          400: ERROR_SCHEMA,
          401: ERROR_SCHEMA,
          403: ERROR_SCHEMA,
        },
      },
    },
    async (req) => {
      const who = req.identity!;
      const link = await createUiLoginLink(ctx.store, {
        serverUrl: o.publicUrl ?? `https://${req.headers.host ?? 'localhost'}`,
        admin: who.name,
        adminSerial: who.serial,
      });
      await ctx.events.emit('admin.action', {
        actor: { kind: 'admin', id: who.name },
        outcome: 'success',
        details: { action: 'ui.link_issued', target: who.serial, detail: `valid until ${link.expiresAt}` },
      });
      return link;
    },
  );
}
