/**
 * Forwarding a device's journal to the control plane: ask the server for the last entry it logged
 * for this device, send everything after it (oldest first, in batches), and report what the server
 * found. The transport is any mTLS client with a `send(method, path, body)` (the agent's
 * FleetClient); the server takes the device identity and journal key from the client certificate.
 */
import { EdgeguardError } from '../errors/index.ts';
import { encodeJournalRecord, type Journal, type JournalGap } from './journal.ts';

export interface JournalTransport {
  send<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
}

export interface ForwardResult {
  sent: number;
  logged: number;
  duplicates: number;
  /** Seq of the last entry the server has now. */
  serverSeq: number;
  gaps: JournalGap[];
}

interface AppendAnswer {
  entries: Array<{ seq: number; index: number | null; status: 'logged' | 'duplicate' | 'conflict' }>;
  gaps: JournalGap[];
}

function failed(what: string, r: { status: number; body: unknown }): EdgeguardError {
  // Outside input: the server's message is used only when it is a string.
  const message = (r.body as { error?: { message?: unknown } } | null | undefined)?.error?.message;
  return new EdgeguardError(
    r.status === 401 || r.status === 403 ? 'EG_UNAUTHORIZED' : 'EG_SERVER',
    `${what} failed (HTTP ${r.status}${typeof message === 'string' && message ? `: ${message}` : ''}).`,
  );
}

/**
 * `maxBytes` bounds how much of the journal one call reads (and so the CPU it spends parsing);
 * a caller that gets `serverSeq < journal.lastSeq` back calls again for the rest.
 */
export async function forwardJournal(
  journal: Journal,
  transport: JournalTransport,
  opts: { batch?: number; maxBytes?: number } = {},
): Promise<ForwardResult> {
  const batch = Math.min(Math.max(1, opts.batch ?? 500), 1000);
  const head = await transport.send<{ seq: number }>('GET', '/v1/audit/journal/head');
  if (head.status !== 200 || typeof head.body?.seq !== 'number')
    throw failed('asking the server for the journal head', head);
  const pending = await journal.readFrom(head.body.seq + 1, opts.maxBytes);
  const result: ForwardResult = { sent: 0, logged: 0, duplicates: 0, serverSeq: head.body.seq, gaps: [] };
  for (let i = 0; i < pending.length; i += batch) {
    const slice = pending.slice(i, i + batch);
    const r = await transport.send<AppendAnswer>('POST', '/v1/audit/journal', {
      records: slice.map((e) => encodeJournalRecord(e).subarray(4).toString('base64')),
    });
    if (r.status !== 200) throw failed('forwarding the audit journal', r);
    result.sent += slice.length;
    for (const e of r.body.entries) {
      if (e.status === 'logged') result.logged += 1;
      if (e.status === 'duplicate') result.duplicates += 1;
    }
    result.gaps.push(...r.body.gaps.map((g) => ({ ...g, position: g.position + i })));
    result.serverSeq = slice[slice.length - 1]!.seq;
  }
  return result;
}
