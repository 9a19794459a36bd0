/**
 * A tuf-js fetcher for a static release repository (`update.metadataUrl`, any web host; not
 * director mode) that connects only where the agent's egress allowlist lets it: tuf-js's own
 * fetcher opens connections of its own, past the allowlist. Metadata and targets are signed and
 * hash-checked by TUF, so plain http is allowed as tuf-js allows it; https uses the system's CAs.
 */
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { ReadableStream } from 'node:stream/web';
import { BaseFetcher } from 'tuf-js';
import { EdgeguardError } from '../errors/index.ts';
import type { EgressDialer } from '../fleet/index.ts';
import { getStream } from './http-stream.ts';

export interface RepositoryFetcherOptions {
  /** The agent's egress allowlist (http-stream.ts). */
  dialer?: EgressDialer | undefined;
  timeoutMs?: number;
}

export class RepositoryFetcher extends BaseFetcher {
  private readonly http = new HttpAgent({ keepAlive: true });
  private readonly https = new HttpsAgent({ keepAlive: true, minVersion: 'TLSv1.2' });
  private readonly timeoutMs: number;
  private readonly dialer: EgressDialer | undefined;

  constructor(o: RepositoryFetcherOptions = {}) {
    super();
    this.timeoutMs = o.timeoutMs ?? 30_000;
    this.dialer = o.dialer;
  }

  override fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    const target = new URL(url);
    const common = { timeoutMs: this.timeoutMs, dialer: this.dialer };
    if (target.protocol === 'https:') return getStream(target, { request: httpsRequest, agent: this.https, ...common });
    if (target.protocol === 'http:') return getStream(target, { request: httpRequest, agent: this.http, ...common });
    throw new EdgeguardError('EG_USAGE', `a release repository is reached over http or https, not ${url}.`);
  }

  close(): void {
    this.http.destroy();
    this.https.destroy();
  }
}
