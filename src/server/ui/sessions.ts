/**
 * Dashboard sign-in. A browser holds no client certificate, so an admin who does (or who holds the
 * server's data directory) asks for a one-time sign-in link (`edgeguard admin ui-login`). The link
 * carries a 256-bit token in its fragment, which the browser never sends in a request line (so
 * it stays out of access logs and Referer headers); the sign-in page posts it once. Redeeming
 * spends the token with one conditional UPDATE (two replicas racing cannot both accept it) and
 * opens a session: a random id in a `__Host-` cookie (HttpOnly, Secure, SameSite=Strict), bound
 * to the admin's name and, for links issued over mutual TLS, the admin certificate's serial: the
 * session ends when that certificate is revoked. Only SHA-256 digests of tokens and session ids
 * are stored; each session has its own CSRF token for the forms it posts.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Store } from '../../store/index.ts';

/** How long a sign-in link can be redeemed. */
export const UI_LINK_TTL_MS = 5 * 60_000;
/** How long a session lasts; the admin signs in again afterwards. */
export const UI_SESSION_TTL_MS = 30 * 60_000;
export const UI_SESSION_COOKIE = '__Host-edgeguard-ui';
export const UI_LOGIN_PATH = '/ui/login';

type UiTables = {
  ui_login_links: {
    token_sha256: string;
    admin_name: string;
    admin_serial: string | null;
    created_at: string;
    expires_at: string;
    used_at: string | null;
    refusals: number;
  };
  ui_sessions: {
    id_sha256: string;
    admin_name: string;
    admin_serial: string | null;
    csrf_token: string;
    created_at: string;
    expires_at: string;
  };
};

export interface UiSession {
  admin: string;
  /** The admin certificate the link was issued to; absent for links made from the data directory. */
  adminSerial: string | undefined;
  csrfToken: string;
  expiresAt: string;
}

export interface UiLoginLink {
  url: string;
  expiresAt: string;
}

/** Why a sign-in was refused (for the audit event; the browser sees one sentence for all). */
export type RedeemRefusal = 'unknown' | 'used' | 'expired';

/**
 * A refused sign-in; `firstForLink` is true the first time a real link is refused (the one refusal
 * worth an audit entry: more of them, or tokens never issued, are only counted, so that anonymous
 * callers cannot fill the log).
 */
export interface Refused {
  refused: RedeemRefusal;
  firstForLink: boolean;
  /** The admin a real link was issued for. */
  admin?: string;
}

const digest = (secret: string) => createHash('sha256').update(secret, 'utf8').digest('hex');
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

function tables(store: Store): Kysely<UiTables> {
  return store.db.withTables<UiTables>() as unknown as Kysely<UiTables>;
}

/** A new one-time sign-in link to `serverUrl`'s dashboard, for `admin`. */
export async function createUiLoginLink(
  store: Store,
  o: { serverUrl: string; admin: string; adminSerial?: string | undefined; ttlMs?: number; now?: Date },
): Promise<UiLoginLink> {
  const now = o.now ?? new Date();
  const token = randomBytes(32).toString('base64url');
  const expiresAt = new Date(now.getTime() + (o.ttlMs ?? UI_LINK_TTL_MS)).toISOString();
  await tables(store)
    .insertInto('ui_login_links')
    .values({
      token_sha256: digest(token),
      admin_name: o.admin,
      admin_serial: o.adminSerial ?? null,
      created_at: now.toISOString(),
      expires_at: expiresAt,
      used_at: null,
      refusals: 0,
    })
    .execute();
  return { url: `${o.serverUrl.replace(/\/+$/, '')}${UI_LOGIN_PATH}#${token}`, expiresAt };
}

export class UiSessions {
  private readonly db: Kysely<UiTables>;

  constructor(
    private readonly store: Store,
    private readonly sessionTtlMs = UI_SESSION_TTL_MS,
  ) {
    this.db = tables(store);
  }

  /** Spend a link token and open a session; the refusal reason when it cannot be spent. */
  async redeem(token: string): Promise<{ sessionId: string; session: UiSession } | Refused> {
    if (!TOKEN_RE.test(token)) return { refused: 'unknown', firstForLink: false };
    const hash = digest(token);
    const now = new Date().toISOString();
    const link = await this.db
      .selectFrom('ui_login_links')
      .selectAll()
      .where('token_sha256', '=', hash)
      .executeTakeFirst();
    if (!link) return { refused: 'unknown', firstForLink: false };
    const spent = await this.db
      .updateTable('ui_login_links')
      .set({ used_at: now })
      .where('token_sha256', '=', hash)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    // The UPDATE decides: of two requests racing with one token, exactly one changes the row.
    if (Number(spent.numUpdatedRows) !== 1) {
      await this.db
        .updateTable('ui_login_links')
        .set((eb) => ({ refusals: eb('refusals', '+', 1) }))
        .where('token_sha256', '=', hash)
        .execute();
      return {
        refused: link.used_at === null && link.expires_at <= now ? 'expired' : 'used',
        firstForLink: Number(link.refusals) === 0,
        admin: link.admin_name,
      };
    }
    const sessionId = randomBytes(32).toString('base64url');
    const session: UiSession = {
      admin: link.admin_name,
      adminSerial: link.admin_serial ?? undefined,
      csrfToken: randomBytes(32).toString('base64url'),
      expiresAt: new Date(Date.now() + this.sessionTtlMs).toISOString(),
    };
    await this.db
      .insertInto('ui_sessions')
      .values({
        id_sha256: digest(sessionId),
        admin_name: session.admin,
        admin_serial: link.admin_serial,
        csrf_token: session.csrfToken,
        created_at: now,
        expires_at: session.expiresAt,
      })
      .execute();
    return { sessionId, session };
  }

  /** The live session with this id: not expired, and its admin certificate (if any) not revoked. */
  async lookup(sessionId: string | undefined): Promise<UiSession | undefined> {
    if (sessionId === undefined || !TOKEN_RE.test(sessionId)) return undefined;
    const row = await this.db
      .selectFrom('ui_sessions')
      .selectAll()
      .where('id_sha256', '=', digest(sessionId))
      .executeTakeFirst();
    if (!row || row.expires_at <= new Date().toISOString()) return undefined;
    if (row.admin_serial !== null && (await this.store.certificateStatus(row.admin_serial)) !== 'good') {
      await this.end(sessionId);
      return undefined;
    }
    return {
      admin: row.admin_name,
      adminSerial: row.admin_serial ?? undefined,
      csrfToken: row.csrf_token,
      expiresAt: row.expires_at,
    };
  }

  async end(sessionId: string): Promise<void> {
    await this.db.deleteFrom('ui_sessions').where('id_sha256', '=', digest(sessionId)).execute();
  }

  /** Links and sessions past their lifetime (links kept a day, so a late reuse is told "used"). */
  async prune(): Promise<void> {
    const now = Date.now();
    await this.db.deleteFrom('ui_sessions').where('expires_at', '<=', new Date(now).toISOString()).execute();
    await this.db
      .deleteFrom('ui_login_links')
      .where('expires_at', '<=', new Date(now - 86_400_000).toISOString())
      .execute();
  }
}

/** Whether a submitted CSRF token is the session's (constant time). */
export function csrfTokenMatches(session: UiSession, submitted: unknown): boolean {
  if (typeof submitted !== 'string') return false;
  const a = Buffer.from(submitted, 'utf8');
  const b = Buffer.from(session.csrfToken, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}
