/**
 * One GET for a tuf-js fetcher (tuf-js 5.0.1 `BaseFetcher`: `fetch(url)` answers a web
 * ReadableStream, and the base class enforces each download's maximum length while it reads),
 * through the agent's egress allowlist when it has one. An HTTP status other than 200 is tuf-js's
 * own DownloadHTTPError, so the Updater treats a missing next root version as the end of the walk.
 */
import type { Agent as HttpAgent, ClientRequest, IncomingMessage, RequestOptions } from 'node:http';
import { Readable } from 'node:stream';
import type { ReadableStream } from 'node:stream/web';
// Not re-exported by the package index; the Updater tests `instanceof` this very class (a missing
// next root version is a 404 and ends the root walk), so it must be tuf-js's own.
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { EdgeguardError } from '../errors/index.ts';
import type { EgressDialer } from '../fleet/index.ts';

export type RequestFn = (url: URL, options: RequestOptions, callback: (res: IncomingMessage) => void) => ClientRequest;

export interface StreamOptions {
  request: RequestFn;
  agent: HttpAgent;
  timeoutMs: number;
  /**
   * The agent's egress allowlist (src/fleet/egress-dialer.ts): a literal address is checked before
   * connecting and every address a name resolves to is checked before the first packet, as for the
   * agent's other calls. Absent: no allowlist (the CLI run by an operator, a device without `egress:`).
   */
  dialer?: EgressDialer | undefined;
}

export function getStream(target: URL, o: StreamOptions): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
  o.dialer?.checkUrl(target);
  const lookup = o.dialer?.lookupFor(target.port ? Number(target.port) : target.protocol === 'https:' ? 443 : 80);
  return new Promise((resolve, reject) => {
    const req = o.request(target, { agent: o.agent, timeout: o.timeoutMs, ...(lookup ? { lookup } : {}) }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new DownloadHTTPError(`Failed to download ${target.pathname}`, res.statusCode ?? 0));
        return;
      }
      resolve(Readable.toWeb(res) as ReadableStream<Uint8Array<ArrayBuffer>>);
    });
    req.on('timeout', () => req.destroy(new Error(`fetch failed: no answer within ${o.timeoutMs} ms`)));
    // An egress denial keeps its code (EG_EGRESS_DENIED): it is the operator's to fix, not the network's.
    req.on('error', (e) =>
      reject(e instanceof EdgeguardError ? e : new Error(`fetch failed: ${e.message}`, { cause: e })),
    );
    req.end();
  });
}
