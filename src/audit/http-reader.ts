/**
 * A LogReader over the control plane's HTTPS API (routes in src/server/routes/audit.ts): the
 * checkpoint and consistency proofs are public, entries and their proofs need a fleet
 * certificate. TLS verifies the server against the fleet CA; the log's answers are verified
 * separately under the pinned log key by the caller.
 */
import { request } from 'node:https';
import { EdgeguardError, FILE_CAPS, readBoundedText } from '../errors/index.ts';
import { fromB64 } from '../crypto/encoding.ts';
import type { LogReader } from './reader.ts';

export interface HttpLogReaderOptions {
  url: string;
  /** PEM file of the fleet CA (root, or root + issuing). */
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  /** The CA, certificate and key as PEM text instead of files (an enrolled device's, unwrapped in memory). */
  pems?: { ca: string; cert: string; key: string };
  timeoutMs?: number;
}

const MAX_RESPONSE = 4 * 1024 * 1024;

async function readPem(path: string | undefined, what: string): Promise<string | undefined> {
  if (path === undefined) return undefined;
  return readBoundedText(path, FILE_CAPS.certificate, `read ${what}`);
}

export async function httpLogReader(opts: HttpLogReaderOptions): Promise<LogReader> {
  let base: URL;
  try {
    base = new URL(opts.url);
  } catch {
    throw new EdgeguardError('EG_USAGE', `--server "${opts.url}" is not a URL; use https://host:port.`);
  }
  if (base.protocol !== 'https:')
    throw new EdgeguardError('EG_USAGE', `--server must be an https:// URL (the control plane only speaks TLS).`);
  if ((opts.cert === undefined) !== (opts.key === undefined))
    throw new EdgeguardError('EG_USAGE', 'pass --cert and --key together.');
  const [ca, cert, key] = opts.pems
    ? [opts.pems.ca, opts.pems.cert, opts.pems.key]
    : await Promise.all([
        readPem(opts.ca, 'the fleet CA'),
        readPem(opts.cert, 'the client certificate'),
        readPem(opts.key, 'the client key'),
      ]);
  const timeout = opts.timeoutMs ?? 15_000;

  function get(path: string): Promise<{ status: number; body: Buffer; type: string }> {
    const u = new URL(path, base);
    return new Promise((resolve, reject) => {
      const req = request(
        u,
        {
          method: 'GET',
          ca,
          cert,
          key,
          timeout,
          minVersion: 'TLSv1.3',
          headers: { accept: 'application/json, text/plain' },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let total = 0;
          res.on('data', (c: Buffer) => {
            total += c.length;
            if (total > MAX_RESPONSE) {
              req.destroy(
                new EdgeguardError(
                  'EG_SERVER',
                  `the server's answer to ${u.pathname} is larger than ${MAX_RESPONSE} bytes.`,
                ),
              );
              return;
            }
            chunks.push(c);
          });
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              body: Buffer.concat(chunks),
              type: String(res.headers['content-type'] ?? ''),
            }),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () =>
        req.destroy(
          new EdgeguardError('EG_SERVER', `the server did not answer ${u.pathname} within ${timeout / 1000} s.`),
        ),
      );
      req.on('error', (e) => {
        if (e instanceof EdgeguardError) reject(e);
        else
          reject(
            new EdgeguardError(
              'EG_TLS',
              `could not reach ${base.origin} (${(e as NodeJS.ErrnoException).code ?? e.message}); check --server and --ca.`,
              { cause: e },
            ),
          );
      });
      req.end();
    });
  }

  async function getOk(path: string): Promise<Buffer> {
    const r = await get(path);
    if (r.status === 200) return r.body;
    let err: { code?: unknown; message?: unknown } | undefined;
    try {
      err = (JSON.parse(r.body.toString('utf8')) as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    } catch {
      err = undefined;
    }
    // Outside input: the server's message is used only when it is a string.
    const message = typeof err?.message === 'string' ? err.message : '';
    const code =
      err?.code === 'EG_NOT_FOUND'
        ? 'EG_NOT_FOUND'
        : r.status === 401
          ? 'EG_UNAUTHORIZED'
          : r.status === 403
            ? 'EG_FORBIDDEN'
            : 'EG_SERVER';
    throw new EdgeguardError(code, `the server answered ${r.status} to ${path}${message ? `: ${message}` : ''}`);
  }

  function hashes(value: unknown, what: string): Buffer[] {
    if (!Array.isArray(value) || value.length > 128)
      throw new EdgeguardError('EG_FORMAT', `the server's ${what} is not a list of hashes.`);
    return value.map((h) => {
      const b = typeof h === 'string' ? fromB64(h) : undefined;
      if (b === undefined || b.length !== 32)
        throw new EdgeguardError('EG_FORMAT', `the server's ${what} holds a value that is not a base64 SHA-256 hash.`);
      return b;
    });
  }

  function json(body: Buffer, what: string): Record<string, unknown> {
    try {
      const v = JSON.parse(body.toString('utf8')) as unknown;
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      // fall through
    }
    throw new EdgeguardError('EG_FORMAT', `the server's ${what} is not a JSON object.`);
  }

  return {
    where: base.origin,
    async checkpoint() {
      return (await getOk('/v1/audit/checkpoint')).toString('utf8');
    },
    async inclusionProof(index, size) {
      const v = json(await getOk(`/v1/audit/entries/${index}/proof?size=${size}`), 'inclusion proof');
      const leaf = typeof v.leaf === 'string' ? fromB64(v.leaf) : undefined;
      if (leaf === undefined)
        throw new EdgeguardError('EG_FORMAT', "the server's inclusion proof carries no base64 leaf.");
      return { leaf, proof: hashes(v.proof, 'inclusion proof') };
    },
    async consistencyProof(size1, size2) {
      const v = json(await getOk(`/v1/audit/proof/consistency?from=${size1}&to=${size2}`), 'consistency proof');
      return hashes(v.proof, 'consistency proof');
    },
  };
}
