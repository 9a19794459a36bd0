/**
 * The device side of the human-review queue: a flagged input is sealed to the operators' review
 * public key at once (in memory; fleet/review-item.ts), the sealed item goes to the bounded spool
 * (fleet/review-spool.ts), and a background loop delivers spooled items to the control plane when a
 * sink is configured, deleting each one only after the server acknowledged it. While the server
 * is unreachable the items wait, encrypted. Nothing here can open an item: the device never
 * holds the review private key.
 */
import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { EdgeguardError } from '../errors/index.ts';
import {
  type FleetClient,
  sealReviewItem,
  reviewKeyId,
  type ReviewMetadata,
  ReviewSpool,
  type SpoolEntry,
  type SpoolEvents,
} from '../fleet/index.ts';

/** Where spooled items are delivered (the control plane, in production). */
export interface ReviewSink {
  send(item: Buffer, id: string): Promise<void>;
  close?(): void;
}

/** Path of the control plane route that receives sealed items (kept encrypted there). */
export const REVIEW_UPLOAD_PATH = '/v1/review/items';

/** Deliver items to the control plane over mutual TLS: POST {item: base64} to /v1/review/items. */
export function fleetReviewSink(client: FleetClient): ReviewSink {
  return {
    async send(item, id) {
      await client.call('POST', REVIEW_UPLOAD_PATH, { id, item: item.toString('base64') });
    },
    close: () => client.close(),
  };
}

export interface ReviewQueueEvents extends SpoolEvents {
  sealed?(id: string): void;
  uploaded?(id: string): void;
  uploadFailed?(error: EdgeguardError): void;
}

export interface ReviewQueueOptions {
  publicKey: KeyObject;
  dir: string;
  maxItems: number;
  maxBytes: number;
  sink?: ReviewSink;
  intervalMs?: number;
  log?: Logger;
  events?: ReviewQueueEvents;
}

export class ReviewQueue {
  readonly keyId: string;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<{ sent: number; failed: boolean }> | undefined;
  private lastFailure: string | undefined;

  private constructor(
    private readonly publicKey: KeyObject,
    readonly spool: ReviewSpool,
    private readonly o: ReviewQueueOptions,
  ) {
    this.keyId = reviewKeyId(publicKey);
  }

  static async open(o: ReviewQueueOptions): Promise<ReviewQueue> {
    const log = o.log;
    const events = o.events ?? {};
    const spool = await ReviewSpool.open({
      dir: o.dir,
      maxItems: o.maxItems,
      maxBytes: o.maxBytes,
      events: {
        dropped(entry: SpoolEntry, reason) {
          log?.warn(
            { item: entry.id, createdMs: entry.createdMs, bytes: entry.bytes, reason },
            'review spool full: dropped the oldest sealed item',
          );
          events.dropped?.(entry, reason);
        },
        changed: events.changed,
      },
    });
    return new ReviewQueue(o.publicKey, spool, o);
  }

  /** Seal an input with its findings and spool it. The caller still owns (and wipes) `input`. */
  async submit(
    metadata: Omit<ReviewMetadata, 'kind' | 'version' | 'id' | 'createdAt'>,
    input: Uint8Array,
  ): Promise<{ id: string }> {
    const { id, bytes } = sealReviewItem(this.publicKey, metadata, input);
    await this.spool.add(bytes);
    this.o.events?.sealed?.(id);
    if (this.o.sink) void this.flush();
    return { id };
  }

  /** Deliver spooled items, oldest first, until one fails (then wait for the next round). */
  flush(): Promise<{ sent: number; failed: boolean }> {
    if (!this.o.sink) return Promise.resolve({ sent: 0, failed: false });
    this.flushing ??= this.doFlush().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async doFlush(): Promise<{ sent: number; failed: boolean }> {
    const sink = this.o.sink!;
    let sent = 0;
    for (const entry of this.spool.list()) {
      let bytes: Buffer;
      try {
        bytes = await this.spool.read(entry.name);
      } catch {
        continue; // dropped meanwhile
      }
      try {
        await sink.send(bytes, entry.id);
      } catch (e) {
        const err =
          e instanceof EdgeguardError
            ? e
            : new EdgeguardError('EG_SERVER', `review upload failed (${(e as Error).message}).`, { cause: e });
        if (this.lastFailure !== err.message)
          this.o.log?.warn(
            { code: err.code, spooled: this.spool.items },
            `review upload failed; items stay sealed in the spool: ${err.message}`,
          );
        this.lastFailure = err.message;
        this.o.events?.uploadFailed?.(err);
        return { sent, failed: true };
      }
      this.lastFailure = undefined;
      await this.spool.remove(entry.name);
      this.o.events?.uploaded?.(entry.id);
      sent++;
    }
    return { sent, failed: false };
  }

  start(): void {
    if (!this.o.sink || this.timer) return;
    this.timer = setInterval(() => void this.flush(), this.o.intervalMs ?? 10_000);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flushing?.catch(() => undefined);
    this.o.sink?.close?.();
  }
}
