/**
 * A tuf-js fetcher (tuf-js 5.0.1 `BaseFetcher`: `fetch(url)` answers a web ReadableStream, and the
 * base class enforces each download's maximum length while it reads) that reaches the control
 * plane over mutual TLS: the fleet CA is the only trust anchor and the device presents its
 * certificate, as every other device call does. An HTTP status other than 200 is tuf-js's own
 * DownloadHTTPError, so the Updater treats a missing next root version as the end of the walk.
 */
import { Agent, request } from 'node:https';
import { Readable } from 'node:stream';
import type { ReadableStream } from 'node:stream/web';
import { BaseFetcher } from 'tuf-js';
// Not re-exported by the package index; the Updater tests `instanceof` this very class (a missing
// next root version is a 404 and ends the root walk), so it must be tuf-js's own.
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { EdgeguardError } from '../errors/index.ts';
import type { EgressDialer } from '../fleet/index.ts';

export interface MtlsFetcherOptions {
  /** The fleet root CA, PEM: the only certificate authority the server's certificate may chain to. */
  ca: string;
  /** The device certificate chain and its private key, PEM. */
  cert: string;
  key: string;
  timeoutMs?: number;
  /**
   * The agent's egress allowlist (src/fleet/egress-dialer.ts): a literal address is checked before
   * connecting and every address a name resolves to is checked before the first packet, as for the
   * agent's other control-plane calls. Absent: no allowlist (the CLI run by an operator).
   */
  dialer?: EgressDialer | undefined;
}

export class MtlsFetcher extends BaseFetcher {
  private readonly agent: Agent;
  private readonly timeoutMs: number;
  private readonly dialer: EgressDialer | undefined;

  constructor(o: MtlsFetcherOptions) {
    super();
    this.agent = new Agent({
      keepAlive: true,
      ca: o.ca,
      cert: o.cert,
      key: o.key,
      minVersion: 'TLSv1.3',
      rejectUnauthorized: true,
    });
    this.timeoutMs = o.timeoutMs ?? 30_000;
    this.dialer = o.dialer;
  }

  override fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    const target = new URL(url);
    if (target.protocol !== 'https:')
      throw new EdgeguardError(
        'EG_USAGE',
        `the release fetcher reaches the control plane over https only, not ${url}.`,
      );
    this.dialer?.checkUrl(target);
    const lookup = this.dialer?.lookupFor(target.port ? Number(target.port) : 443);
    return new Promise((resolve, reject) => {
      const req = request(
        target,
        { agent: this.agent, timeout: this.timeoutMs, ...(lookup ? { lookup } : {}) },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            reject(new DownloadHTTPError(`Failed to download ${target.pathname}`, res.statusCode ?? 0));
            return;
          }
          resolve(Readable.toWeb(res) as ReadableStream<Uint8Array<ArrayBuffer>>);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`fetch failed: no answer within ${this.timeoutMs} ms`)));
      // An egress denial keeps its code (EG_EGRESS_DENIED): it is the operator's to fix, not the network's.
      req.on('error', (e) =>
        reject(e instanceof EdgeguardError ? e : new Error(`fetch failed: ${e.message}`, { cause: e })),
      );
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
