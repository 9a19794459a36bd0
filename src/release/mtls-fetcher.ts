/**
 * A tuf-js fetcher that reaches the control plane over mutual TLS (director mode): the fleet CA is
 * the only trust anchor and the device presents its certificate, as every other device call does.
 */
import { Agent, request } from 'node:https';
import type { ReadableStream } from 'node:stream/web';
import { BaseFetcher } from 'tuf-js';
import { EdgeguardError } from '../errors/index.ts';
import type { EgressDialer } from '../fleet/index.ts';
import { getStream } from './http-stream.ts';

export interface MtlsFetcherOptions {
  /** The fleet root CA, PEM: the only certificate authority the server's certificate may chain to. */
  ca: string;
  /** The device certificate chain and its private key, PEM. */
  cert: string;
  key: string;
  timeoutMs?: number;
  /** The agent's egress allowlist (http-stream.ts); absent: none (the CLI run by an operator). */
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
    return getStream(target, { request, agent: this.agent, timeoutMs: this.timeoutMs, dialer: this.dialer });
  }

  close(): void {
    this.agent.destroy();
  }
}
