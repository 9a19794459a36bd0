/**
 * An HTTPS client for the control plane that trusts only the fleet CA (pinned: the system trust
 * store is not used) and, once the device or admin holds a certificate, authenticates with it
 * (mutual TLS). Connections are kept alive. Used by the agent and by the admin CLI.
 */
import { Agent, request as httpsRequest } from 'node:https';
import type { z } from 'zod';
import { EdgeguardError, type ErrorCode, ERROR_EXIT_CODES } from '../errors/index.ts';
import type { EgressDialer } from './egress-dialer.ts';
import { parseAnswer } from './answer.ts';

export interface FleetClientOptions {
  /** https://host:port */
  server: string;
  /** Fleet root CA, PEM (the only trust anchor). */
  ca: string;
  /** Client certificate chain and key, PEM (absent for enrollment calls). */
  cert?: string | undefined;
  key?: string | undefined;
  /** Max sockets (default 16). */
  maxSockets?: number;
  timeoutMs?: number;
  /** The device's egress allowlist: a server it does not list is refused (EG_EGRESS_DENIED) before any packet. */
  dialer?: EgressDialer | undefined;
}

export interface FleetResponse<T = unknown> {
  status: number;
  body: T;
  headers: Record<string, string | string[] | undefined>;
}

export class FleetClient {
  readonly base: URL;
  private agent: Agent;
  private readonly timeoutMs: number;
  private readonly maxSockets: number;
  private readonly ca: string;
  private readonly dialer: EgressDialer | undefined;
  private retired: Array<{ agent: Agent; timer: NodeJS.Timeout }> = [];

  constructor(opts: FleetClientOptions) {
    let base: URL;
    try {
      base = new URL(opts.server);
    } catch (e) {
      throw new EdgeguardError('EG_USAGE', `"${opts.server}" is not a URL; use https://HOST:PORT.`, { cause: e });
    }
    if (base.protocol !== 'https:')
      throw new EdgeguardError('EG_USAGE', `the control plane is reached over https only, not ${base.protocol}.`);
    this.base = base;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.maxSockets = opts.maxSockets ?? 16;
    this.ca = opts.ca;
    this.dialer = opts.dialer;
    this.agent = this.makeAgent(opts.cert, opts.key);
  }

  private makeAgent(cert: string | undefined, key: string | undefined): Agent {
    return new Agent({
      keepAlive: true,
      maxSockets: this.maxSockets,
      ca: this.ca,
      ...(cert !== undefined ? { cert } : {}),
      ...(key !== undefined ? { key } : {}),
      minVersion: 'TLSv1.3',
      rejectUnauthorized: true,
      ...(this.dialer ? { lookup: this.dialer.lookupFor(this.base.port ? Number(this.base.port) : 443) } : {}),
    });
  }

  /**
   * Present another client certificate from the next request on (a renewed device certificate):
   * new requests open connections with it; requests in flight finish on the old connections,
   * which are closed once the request timeout has passed.
   */
  setCredential(cert: string, key: string): void {
    const old = this.agent;
    this.agent = this.makeAgent(cert, key);
    for (const sockets of Object.values(old.freeSockets)) for (const s of sockets ?? []) s.destroy();
    const timer = setTimeout(() => {
      old.destroy();
      this.retired = this.retired.filter((r) => r.agent !== old);
    }, this.timeoutMs);
    timer.unref();
    this.retired.push({ agent: old, timer });
  }

  /** Raw request: returns status and parsed JSON (or Buffer for non-JSON), never throws on HTTP status. */
  async send<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<FleetResponse<T>> {
    const url = new URL(path, this.base);
    this.dialer?.checkUrl(url);
    // A Buffer is sent as it is (its content-type in `headers`); anything else as JSON.
    const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        url,
        {
          method,
          agent: this.agent,
          headers: {
            accept: 'application/json',
            ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
            ...headers,
          },
          timeout: this.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const raw = Buffer.concat(chunks);
            const type = String(res.headers['content-type'] ?? '');
            let parsed: unknown = raw;
            if (type.includes('json')) {
              try {
                parsed = JSON.parse(raw.toString('utf8'));
              } catch {
                parsed = raw.toString('utf8');
              }
            } else if (type.startsWith('text/')) {
              parsed = raw.toString('utf8');
            }
            resolve({ status: res.statusCode ?? 0, body: parsed as T, headers: res.headers });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () =>
        req.destroy(
          new EdgeguardError('EG_TLS', `the server at ${this.base.origin} did not answer within ${this.timeoutMs} ms.`),
        ),
      );
      req.on('error', (e) => reject(connectionError(e, this.base)));
      if (payload) req.write(payload);
      req.end();
    });
  }

  /** Request that must succeed (2xx); otherwise the server's error code and sentence are thrown. */
  async call<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<FleetResponse<T>> {
    const r = await this.send<T>(method, path, body, headers);
    if (r.status >= 200 && r.status < 300) return r;
    throw serverError(r);
  }

  /** call(), with the answer checked against `schema` before any member is used (EG_SERVER naming `what`). */
  async callChecked<T>(schema: z.ZodType<T>, what: string, method: string, path: string, body?: unknown): Promise<T> {
    return parseAnswer(schema, (await this.call(method, path, body)).body, what);
  }

  close(): void {
    this.agent.destroy();
    for (const r of this.retired) {
      clearTimeout(r.timer);
      r.agent.destroy();
    }
    this.retired = [];
  }
}

export function serverError(r: FleetResponse<unknown>): EdgeguardError {
  // The answer is outside input: only string members are used (an object there would make the
  // `in` test and Error's message conversion throw a TypeError), and only codes this build knows.
  const err = (r.body as { error?: { code?: unknown; message?: unknown } } | null | undefined)?.error;
  const code =
    typeof err?.code === 'string' && Object.hasOwn(ERROR_EXIT_CODES, err.code) ? (err.code as ErrorCode) : 'EG_SERVER';
  const message = typeof err?.message === 'string' ? err.message : `the server answered HTTP ${r.status}.`;
  return new EdgeguardError(code, message, {
    details: { status: r.status },
  });
}

function connectionError(e: unknown, base: URL): EdgeguardError {
  if (e instanceof EdgeguardError) return e;
  const code = (e as NodeJS.ErrnoException).code ?? '';
  if (code === 'ECONNREFUSED')
    return new EdgeguardError('EG_SERVER', `nothing listens at ${base.origin}; is \`edgeguard server\` running?`, {
      cause: e,
    });
  if (/CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS|HOSTNAME/i.test(code) || /certificate/i.test((e as Error).message ?? '')) {
    return new EdgeguardError(
      'EG_TLS',
      `the server at ${base.origin} did not present a certificate from the pinned fleet CA (${code || (e as Error).message}); check --ca and --server.`,
      { cause: e },
    );
  }
  return new EdgeguardError('EG_SERVER', `could not reach ${base.origin} (${code || (e as Error).message}).`, {
    cause: e,
  });
}
