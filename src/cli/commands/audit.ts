/**
 * `edgeguard audit checkpoint|prove|verify|watch|journal`: check the tamper-evident log from the
 * outside. Nothing the log returns is believed until it verifies locally under the pinned log key
 * (--log-key, the `name+keyid+key` line of audit-log.pub). The log is reached over the control
 * plane's HTTPS API (--server) or, on the server machine, straight in its store (--data / --db).
 */
import { Command } from 'commander';
import { readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { EdgeguardError, fsError, FILE_CAPS, readBoundedText } from '../../errors/index.ts';
import {
  AuditLog,
  LOG_PUB_FILE,
  Witness,
  checkJournalBytes,
  fetchVerifiedCheckpoint,
  parseAuditEvent,
  httpLogReader,
  proveEntry,
  readLogVerifierKey,
  storeLogReader,
  type LogReader,
  type NoteVerifier,
} from '../../audit/index.ts';
import { parsePublicKeyPem } from '../../crypto/index.ts';
import { Store } from '../../store/index.ts';
import { openServerStore } from '../../server/index.ts';
import { AuditAppendAnswer, AuditEntriesAnswer, FleetClient, loadDeviceCredential } from '../../fleet/index.ts';
import { Output, globalOptions } from '../output.ts';
import { connectionPaths, resolveConnection, withConnection, type ConnectionOptions } from '../connection.ts';

interface SourceOptions extends ConnectionOptions {
  device?: string;
  data?: string;
  db?: string;
  logKey?: string;
}

interface ListOptions extends ConnectionOptions {
  type?: string;
  deviceId?: string;
  since?: string;
  until?: string;
  after?: string;
  limit: string;
}

interface ListedEntry {
  index: number;
  event: { type: string; time: string; outcome: string; subject?: string };
}

/** Pages through GET /v1/audit/entries until `limit` entries or the end of the signed log. */
async function listEntries(client: FleetClient, o: ListOptions): Promise<ListedEntry[]> {
  const limit = Number(o.limit);
  if (!Number.isInteger(limit) || limit < 1)
    throw new EdgeguardError('EG_USAGE', '--limit must be a positive integer.');
  const filters = new URLSearchParams();
  if (o.type !== undefined) filters.set('type', o.type);
  if (o.deviceId !== undefined) filters.set('device', o.deviceId);
  if (o.since !== undefined) filters.set('since', o.since);
  if (o.until !== undefined) filters.set('until', o.until);
  const entries: ListedEntry[] = [];
  let after: number | null = o.after === undefined ? null : Number(o.after);
  do {
    const q = new URLSearchParams(filters);
    q.set('limit', String(Math.min(1000, limit - entries.length)));
    if (after !== null) q.set('after', String(after));
    const page = await client.callChecked(AuditEntriesAnswer, 'audit entries', 'GET', `/v1/audit/entries?${q}`);
    entries.push(...page.entries);
    after = page.next;
  } while (after !== null && entries.length < limit);
  return entries;
}

/**
 * Where the log is: the control plane's API (the shared connection options; a client certificate
 * only for entry contents), or the server's own store on the server machine (--data / --db).
 */
function sourceOptions(cmd: Command): Command {
  return withConnection(cmd, 'admin or device')
    .option(
      '--device <dir>',
      'an enrolled device directory as the credential: its server, pinned CA, certificate and TLS key (unwrapped by its key store)',
    )
    .option('--data <dir>', 'the server data directory: read its SQLite store directly (on the server machine)')
    .option('--db <url>', 'the server PostgreSQL database: read it directly (postgres://...)')
    .option('--log-key <file>', `the log verifier key (${LOG_PUB_FILE}); defaults to DIR/${LOG_PUB_FILE} with --data`);
}

interface OpenedSource {
  reader: LogReader;
  logKey: NoteVerifier;
  log?: AuditLog;
  close(): Promise<void>;
}

async function openSource(o: SourceOptions): Promise<OpenedSource> {
  if (o.device !== undefined) return openDeviceSource(o, o.device);
  const local = o.data !== undefined || o.db !== undefined;
  if (local && o.server !== undefined) {
    throw new EdgeguardError(
      'EG_USAGE',
      'say where the log is: --server URL, or --data DIR / --db URL on the server machine.',
    );
  }
  const keyPath = o.logKey ?? (o.data !== undefined ? join(o.data, LOG_PUB_FILE) : undefined);
  if (keyPath === undefined)
    throw new EdgeguardError(
      'EG_USAGE',
      `pass --log-key with the log's verifier key (the ${LOG_PUB_FILE} the server wrote).`,
    );
  const logKey = await readLogVerifierKey(keyPath);
  if (!local) {
    const c = connectionPaths(o, 'optional');
    const reader = await httpLogReader({ url: c.server, ca: c.ca, cert: c.cert, key: c.key });
    return { reader, logKey, close: async () => undefined };
  }
  // The server's own store (DATA/server.json), never a new one beside it.
  const store =
    o.data !== undefined ? await openServerStore({ dataDir: o.data, db: o.db }) : await Store.open({ url: o.db });
  try {
    const log = await AuditLog.open(store, { verifier: logKey });
    return { reader: storeLogReader(log, store.where), logKey, log, close: () => store.close() };
  } catch (e) {
    await store.close();
    throw e;
  }
}

/** The log through the control plane, with an enrolled device's own credentials (--device DIR). */
async function openDeviceSource(o: SourceOptions, dir: string): Promise<OpenedSource> {
  const given = [o.clientCert, o.clientKey, o.cert, o.key, o.data, o.db].some((x) => x !== undefined);
  if (given)
    throw new EdgeguardError(
      'EG_USAGE',
      '--device DIR is the credential: pass it without --client-cert, --client-key, --data or --db.',
    );
  if (o.logKey === undefined)
    throw new EdgeguardError(
      'EG_USAGE',
      `pass --log-key with the log's verifier key (the ${LOG_PUB_FILE} the server wrote).`,
    );
  const logKey = await readLogVerifierKey(o.logKey);
  const cred = await loadDeviceCredential(dir);
  const ca = o.ca !== undefined ? await readBoundedText(o.ca, FILE_CAPS.certificate, 'read the fleet CA') : cred.caPem;
  const reader = await httpLogReader({
    url: o.server ?? cred.server,
    pems: { ca, cert: cred.certPem, key: cred.keyPem },
  });
  return { reader, logKey, close: async () => undefined };
}

async function withSource<T>(o: SourceOptions, fn: (s: OpenedSource) => Promise<T>): Promise<T> {
  const s = await openSource(o);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

async function readTextArg(file: string): Promise<string> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }
  return await readBoundedText(file, FILE_CAPS.config, 'read');
}

/** One state file per log: keyed by origin and key id, so two fleets (or a new key) never share one. */
function defaultStateFile(logKey: NoteVerifier): string {
  const base = process.env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state');
  const dir = join(base, 'edgeguard');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const origin = logKey.name.replace(/[^A-Za-z0-9._-]/g, '_');
  return join(dir, `audit-${origin}-${logKey.keyId.toString('hex')}.checkpoint`);
}

/**
 * Run the witness check; on a fork or rollback keep both signed checkpoints (the evidence) in a
 * file beside the state file and name it in the alarm.
 */
async function observeWithEvidence(w: Witness, state: string, s: OpenedSource) {
  try {
    return await w.observe(await s.reader.checkpoint(), (a, b) => s.reader.consistencyProof(a, b));
  } catch (e) {
    if (e instanceof EdgeguardError && e.code === 'EG_AUDIT_INCONSISTENT' && e.details) {
      const file = `${state}.alarm-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
      try {
        await writeFile(file, JSON.stringify({ alarm: e.message, log: s.reader.where, ...e.details }, null, 2) + '\n');
      } catch {
        throw e;
      }
      throw new EdgeguardError('EG_AUDIT_INCONSISTENT', `${e.message} Evidence saved in ${file}.`, {
        details: { ...e.details, evidenceFile: file },
      });
    }
    throw e;
  }
}

function parseIndex(text: string): number {
  if (!/^(0|[1-9][0-9]{0,15})$/.test(text))
    throw new EdgeguardError('EG_USAGE', `ENTRY_ID "${text}" is not a log index (0, 1, 2, ...).`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new EdgeguardError('EG_USAGE', `ENTRY_ID ${text} is too large.`);
  return n;
}

function parseSeconds(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || n > 86400)
    throw new EdgeguardError('EG_USAGE', `--interval ${text} is not a number of seconds between 0 and 86400.`);
  return n;
}

export function registerAuditCommands(program: Command): void {
  const audit = program
    .command('audit')
    .description(
      'check the tamper-evident audit log: signed checkpoints, inclusion and consistency proofs, a watching witness',
    );

  withConnection(
    audit
      .command('list')
      .description(
        'list signed log entries (admin certificate), filtered by type, device and event time, oldest first; `audit prove N` verifies one',
      ),
  )
    .option('--type <type>', 'only this event type (e.g. device.revoked)')
    .option('--device-id <id>', 'only entries from or about this device (dev-...)')
    .option('--since <time>', 'only events at or after this ISO 8601 time')
    .option('--until <time>', 'only events at or before this ISO 8601 time')
    .option('--after <index>', 'start after this log index (paging)')
    .option('--limit <n>', 'at most this many entries', '1000')
    .action(async (o: ListOptions, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const c = resolveConnection(o, 'required');
      const client = new FleetClient({ server: c.server, ca: c.ca, cert: c.cert!, key: c.key! });
      try {
        const entries = await listEntries(client, o);
        out.result(
          { ok: true, entries },
          entries.length === 0
            ? ['no matching entries']
            : entries.map(
                (e) => `${e.index}  ${e.event.time}  ${e.event.type}  ${e.event.outcome}  ${e.event.subject ?? '-'}`,
              ),
        );
      } finally {
        client.close();
      }
    });

  sourceOptions(
    audit.command('checkpoint').description('fetch the latest signed checkpoint and verify its signature'),
  ).action(async (o: SourceOptions, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    await withSource(o, async (s) => {
      const cp = await fetchVerifiedCheckpoint(s.reader, s.logKey);
      const c = cp.checkpoint;
      out.result(
        {
          ok: true,
          origin: c.origin,
          size: c.size,
          rootHash: c.rootHash.toString('base64'),
          signedBy: cp.note.verified.map((v) => v.name),
          cosignatures: cp.note.unverified.length,
          note: cp.signedNote,
        },
        [
          `checkpoint of ${c.origin}: ${c.size} entries, root ${c.rootHash.toString('base64')}`,
          `signature by ${s.logKey.name} (key ${s.logKey.keyId.toString('hex')}) verified`,
          '',
          cp.signedNote.trimEnd(),
        ],
      );
    });
  });

  sourceOptions(
    audit
      .command('prove')
      .description(
        'fetch entry ENTRY_ID (its log index) with its inclusion proof and verify it against the latest signed checkpoint',
      )
      .argument('<entry-id>', 'log index of the entry'),
  ).action(async (entryId: string, o: SourceOptions, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    const index = parseIndex(entryId);
    await withSource(o, async (s) => {
      const p = await proveEntry(s.reader, s.logKey, index);
      const e = p.leaf.event;
      out.result(
        {
          ok: true,
          index,
          treeSize: p.checkpoint.checkpoint.size,
          rootHash: p.checkpoint.checkpoint.rootHash.toString('base64'),
          leafHash: p.leafHash.toString('hex'),
          proof: p.proof.map((h) => h.toString('hex')),
          entry: p.leaf,
        },
        [
          `entry ${index}: ${e.type} by ${e.actor.kind} ${e.actor.id}${e.subject ? ` on ${e.subject}` : ''} (${e.outcome}) at ${e.time}`,
          `origin: ${p.leaf.origin.kind === 'device' ? `device ${p.leaf.origin.device.deviceId} journal seq ${p.leaf.origin.device.seq}` : 'server'}; logged at ${p.leaf.loggedAt}`,
          `inclusion proof (${p.proof.length} hashes) verified against the checkpoint of size ${p.checkpoint.checkpoint.size} signed by ${s.logKey.name}`,
        ],
      );
    });
  });

  sourceOptions(
    audit
      .command('verify')
      .description(
        'check that the log still extends the last checkpoint this client trusted (consistency proof), then trust the new one',
      )
      .option(
        '--state <file>',
        'where the last trusted checkpoint is kept (default ~/.local/state/edgeguard/audit-ORIGIN-KEYID.checkpoint)',
      )
      .option(
        '--full',
        'with --data/--db: also rebuild the whole tree from the stored entries and compare every row and signed root',
      ),
  ).action(async (o: SourceOptions & { state?: string; full?: boolean }, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    await withSource(o, async (s) => {
      const state = o.state ?? defaultStateFile(s.logKey);
      const w = await Witness.load(s.logKey, state);
      const before = w.last?.checkpoint.size;
      const r = await observeWithEvidence(w, state, s);
      const lines = [
        r.change === 'first'
          ? `trusted for the first time: ${r.checkpoint.checkpoint.size} entries (nothing earlier to compare; later runs prove consistency with it)`
          : r.change === 'same'
            ? `unchanged since the trusted checkpoint: ${r.checkpoint.checkpoint.size} entries`
            : `consistent: the log grew from ${before} to ${r.checkpoint.checkpoint.size} entries without rewriting history (proof verified)`,
        `trusted checkpoint saved in ${state}`,
      ];
      const data: Record<string, unknown> = {
        ok: true,
        change: r.change,
        previousSize: before ?? null,
        size: r.checkpoint.checkpoint.size,
        state,
      };
      if (o.full) {
        if (s.log === undefined)
          throw new EdgeguardError(
            'EG_USAGE',
            '--full reads the store: use it with --data or --db on the server machine.',
          );
        const report = await s.log.checkConsistency();
        data.full = report;
        if (report.problems.length > 0) {
          throw new EdgeguardError(
            'EG_AUDIT_INCONSISTENT',
            `the stored log does not match its signed checkpoints: ${report.problems.slice(0, 3).join('; ')}${report.problems.length > 3 ? ` (and ${report.problems.length - 3} more)` : ''}.`,
            { details: report as unknown as Record<string, unknown> },
          );
        }
        lines.push(
          `full check: ${report.size} entries rebuilt; every stored row and ${report.checkpointsChecked} signed checkpoints match`,
        );
      }
      out.result(data, lines);
    });
  });

  sourceOptions(
    audit
      .command('watch')
      .description(
        'a witness: poll the log, verify each new checkpoint is consistent with the last one seen, alarm (exit 8) on a fork or rollback',
      )
      .option(
        '--state <file>',
        'where the last checkpoint seen is kept (default ~/.local/state/edgeguard/audit-ORIGIN-KEYID.checkpoint)',
      )
      .option('--interval <seconds>', 'seconds between polls', '5')
      .option('--count <n>', 'stop after this many polls (default: run until interrupted)'),
  ).action(async (o: SourceOptions & { state?: string; interval: string; count?: string }, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    const interval = parseSeconds(o.interval);
    const count = o.count === undefined ? Infinity : Number(o.count);
    if (!(count >= 1)) throw new EdgeguardError('EG_USAGE', '--count must be a positive number.');
    await withSource(o, async (s) => {
      const state = o.state ?? defaultStateFile(s.logKey);
      const w = await Witness.load(s.logKey, state);
      const seen: Array<{ size: number; change: string }> = [];
      let stop = false;
      const onSignal = () => {
        stop = true;
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        for (let i = 0; i < count && !stop; i++) {
          if (i > 0) await new Promise((r) => setTimeout(r, interval * 1000));
          const r = await observeWithEvidence(w, state, s);
          seen.push({ size: r.checkpoint.checkpoint.size, change: r.change });
          if (r.change !== 'same')
            out.info(
              `${new Date().toISOString()} ${r.change === 'first' ? 'trusting' : 'consistent'}: ${r.checkpoint.checkpoint.size} entries`,
            );
        }
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      const last = seen[seen.length - 1];
      out.result(
        { ok: true, polls: seen.length, size: last?.size ?? null, state },
        `watched ${seen.length} checkpoint(s); last ${last?.size ?? 0} entries, all consistent`,
      );
    });
  });

  withConnection(
    audit
      .command('append')
      .description(
        "append a server-side audit event (JSON, see docs/formats.md) through the API with an admin certificate; the actor is the certificate's admin",
      )
      .argument('<file>', 'the event as JSON, or - for stdin'),
  ).action(async (file: string, o: ConnectionOptions, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    const text = await readTextArg(file);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new EdgeguardError('EG_FORMAT', `${file === '-' ? 'stdin' : file} is not JSON.`, { cause: e });
    }
    const event = parseAuditEvent(
      { ...(value as Record<string, unknown>), actor: { kind: 'admin', id: 'set-by-server' } },
      'the event',
    );
    const c = resolveConnection(o, 'required');
    const client = new FleetClient({ server: c.server, ca: c.ca, cert: c.cert!, key: c.key! });
    try {
      const { index } = await client.callChecked(AuditAppendAnswer, 'audit append', 'POST', '/v1/audit/events', event);
      out.result(
        { ok: true, index },
        `appended as entry ${index}; \`edgeguard audit prove ${index}\` once the next checkpoint is signed`,
      );
    } finally {
      client.close();
    }
  });

  audit
    .command('journal')
    .description(
      'check a device audit journal file: every entry signed by the device key and chained; gaps reported with their position',
    )
    .argument('<file>', 'the journal file')
    .requiredOption('--device-key <file>', 'the device journal public key (PEM)')
    .action(async (file: string, o: { deviceKey: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      let bytes: Buffer;
      try {
        bytes = await readFile(file);
      } catch (e) {
        throw fsError(e, file, 'read the journal');
      }
      const pem = await readBoundedText(o.deviceKey, FILE_CAPS.key, 'read the device key');
      const r = checkJournalBytes(bytes, parsePublicKeyPem(pem, o.deviceKey));
      if (r.gaps.length > 0) {
        // An audit problem (exit 8), not a package one: the journal is the device's audit record.
        throw new EdgeguardError(
          'EG_AUDIT_INCONSISTENT',
          `the journal ${file} is broken: ${r.gaps.map((g) => `at position ${g.position} (${g.kind}): ${g.reason}`).join('; ')}.`,
          { details: { gaps: r.gaps, entries: r.entries.length } },
        );
      }
      out.result(
        { ok: true, entries: r.entries.length, lastSeq: r.head.seq, head: r.head.hash.toString('hex') },
        `journal ${file}: ${r.entries.length} entries, chain and signatures intact (last seq ${r.head.seq})`,
      );
    });
}
