/**
 * Audit log benchmark: durable appends per second (batched) on SQLite and PostgreSQL, integration
 * latency (append -> inclusion in a signed checkpoint), and proof generation time at large tree
 * sizes. Baselines measured in the same run: the same rows inserted without any Merkle work (what
 * a plain, non-tamper-evident audit table costs) and one fsync per event (a naive durable log).
 *
 *   node --import tsx bench/audit.ts                 # 200k appends, proofs at 1M and 10M
 *   node --import tsx bench/audit.ts --quick         # a smoke run (seconds)
 *   node --import tsx bench/audit.ts --sizes 1000000 # proof trees to build
 *   node --import tsx bench/audit.ts --only proofs --tree-dir /var/tmp/eg-trees   # keep and reuse built trees
 *   (--only appends|latency|api|proofs runs one part; api = device journals over HTTPS + mTLS)
 */
import {
  mkdtempSync,
  rmSync,
  openSync,
  writeSync,
  fsyncSync,
  closeSync,
  statSync,
  existsSync,
  writeFileSync,
  readFileSync,
} from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, createPrivateKey } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { sql } from 'kysely';
import {
  AuditLog,
  CompactRange,
  Journal,
  forwardJournal,
  generateLogSigner,
  hashLeaf,
  journalSignerFromKey,
  verifyConsistency,
  verifyInclusion,
  type AuditEvent,
} from '../src/audit/index.ts';
import { Store, SQLITE_FILE } from '../src/store/index.ts';
import { startServer } from '../src/server/index.ts';
import { auditServerPlugin } from '../src/server/routes/audit.ts';
import { generateP256, privateKeyToPkcs8Pem, spkiOf } from '../src/pki/index.ts';
import { FleetClient } from '../src/fleet/index.ts';
import { machine } from './lib/machine.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const sizesArg = args[args.indexOf('--sizes') + 1];
const PROOF_SIZES =
  args.includes('--sizes') && sizesArg ? sizesArg.split(',').map(Number) : quick ? [100_000] : [1_000_000, 10_000_000];
const APPENDS = quick ? 20_000 : 200_000;
const ONLY = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
const TREE_DIR = args.includes('--tree-dir') ? args[args.indexOf('--tree-dir') + 1] : undefined;
const PG_ADMIN = process.env.EDGEGUARD_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres';

function event(i: number): AuditEvent {
  return {
    type: 'guard.flagged',
    time: new Date().toISOString(),
    actor: { kind: 'device', id: `dev-${i % 500}` },
    subject: `model-${i % 7}`,
    outcome: 'failure',
    details: { check: 'confidence', score: 400_000 + (i % 1000), threshold: 500_000 },
  };
}

async function tempPg(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `eg_bench_${process.pid}_${Date.now()}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  const u = new URL(PG_ADMIN);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_ADMIN });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await c.end();
    },
  };
}

/** Appends/s with `clients` concurrent callers each appending in waves of `wave`. */
async function appendRate(log: AuditLog, total: number): Promise<number> {
  const wave = 4096;
  const t0 = performance.now();
  for (let i = 0; i < total; i += wave) {
    await log.appendMany(Array.from({ length: Math.min(wave, total - i) }, (_, k) => event(i + k)));
  }
  return total / ((performance.now() - t0) / 1000);
}

/** Baseline: the same leaf rows in one plain table, same batch size, no tree. */
async function plainRate(store: Store, total: number, batch: number): Promise<number> {
  await sql`create table bench_plain (idx bigint primary key, leaf text not null)`.execute(store.db);
  const leaf = JSON.stringify({
    v: 1,
    event: event(0),
    origin: { kind: 'server' },
    loggedAt: new Date().toISOString(),
  });
  const t0 = performance.now();
  for (let i = 0; i < total; i += batch) {
    const rows = Array.from({ length: Math.min(batch, total - i) }, (_, k) => ({ idx: i + k, leaf }));
    await store.db.transaction().execute(async (trx) => {
      for (let j = 0; j < rows.length; j += 500)
        await trx
          .insertInto('bench_plain' as never)
          .values(rows.slice(j, j + 500) as never)
          .execute();
    });
  }
  return total / ((performance.now() - t0) / 1000);
}

/** Baseline: one write + fsync per event, the naive way to make each event durable. */
function fsyncRate(dir: string, total: number): number {
  const fd = openSync(join(dir, 'naive.log'), 'a');
  const line = Buffer.from(JSON.stringify(event(0)) + '\n');
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    writeSync(fd, line);
    fsyncSync(fd);
  }
  closeSync(fd);
  return total / ((performance.now() - t0) / 1000);
}

/** Append at a steady rate and measure append() -> covered by a signed checkpoint. */
async function integrationLatency(
  log: AuditLog,
  perSecond: number,
  seconds: number,
): Promise<{ avg: number; p50: number; p99: number; max: number }> {
  const samples: number[] = [];
  const waiting: Array<{ index: number; t: number }> = [];
  let stop = false;
  const poller = (async () => {
    while (!stop || waiting.length > 0) {
      const cp = await log.latestCheckpoint();
      const now = performance.now();
      if (cp) {
        for (let i = waiting.length - 1; i >= 0; i--) {
          const w = waiting[i] as { index: number; t: number };
          if (w.index < cp.size) {
            samples.push(now - w.t);
            waiting.splice(i, 1);
          }
        }
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const interval = 1000 / perSecond;
  const t0 = performance.now();
  let n = 0;
  const inflight: Array<Promise<void>> = [];
  while (performance.now() - t0 < seconds * 1000) {
    const t = performance.now();
    inflight.push(log.append(event(n++)).then((r) => void waiting.push({ index: r.index, t })));
    const next = t0 + n * interval;
    await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
  }
  await Promise.all(inflight);
  stop = true;
  await poller;
  samples.sort((a, b) => a - b);
  const pct = (p: number) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] as number;
  return {
    avg: samples.reduce((a, b) => a + b, 0) / samples.length,
    p50: pct(0.5),
    p99: pct(0.99),
    max: samples[samples.length - 1] as number,
  };
}

/**
 * Build a tree of `size` entries straight into the store's tables (the bulk path a migration
 * would use), with short synthetic leaves: proof generation reads only tree nodes and one leaf.
 */
function bulkLoadSqlite(path: string, size: number): number {
  const db = new BetterSqlite3(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  const insEntry = db.prepare('insert into audit_entries (idx, leaf) values (?, ?)');
  const insNode = db.prepare('insert into audit_nodes (level, idx, hash) values (?, ?, ?)');
  const edge = new CompactRange();
  const t0 = performance.now();
  const chunk = 50_000;
  for (let start = 0; start < size; start += chunk) {
    db.transaction(() => {
      for (let i = start; i < Math.min(size, start + chunk); i++) {
        const leaf = `{"bench":${i}}`;
        insEntry.run(i, leaf);
        edge.append(hashLeaf(Buffer.from(leaf)), (id, h) => insNode.run(id.level, id.index, h.toString('hex')));
      }
    })();
    if (start % 1_000_000 === 0 && start > 0) process.stderr.write(`  loaded ${start.toLocaleString()} entries\n`);
  }
  db.prepare('update audit_state set size = ?, root = ? where id = 1').run(size, edge.root().toString('hex'));
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return (performance.now() - t0) / 1000;
}

async function proofTimes(
  log: AuditLog,
  size: number,
  n: number,
): Promise<{ inclusion: number; inclusionWithLeaf: number; consistency: number; verified: boolean }> {
  const root = await rootOf(log, size);
  let verified = true;
  const idx = Array.from({ length: n }, (_, i) => Math.floor((((i * 2654435761) % 2 ** 32) / 2 ** 32) * size));
  // Warm up the page cache and the statement cache.
  for (const i of idx.slice(0, 50)) await log.inclusionProof(i, size);
  const { inclusionProof, consistencyProof } = await import('../src/audit/merkle.ts');
  let t0 = performance.now();
  for (const i of idx) await inclusionProof(log, i, size);
  const inclusion = (performance.now() - t0) / n;
  t0 = performance.now();
  for (const i of idx) {
    const p = await log.inclusionProof(i, size);
    if (!verifyInclusion(p.leafHash, i, size, p.proof, root)) verified = false;
  }
  const inclusionWithLeaf = (performance.now() - t0) / n;
  t0 = performance.now();
  const sizes1 = idx.map((i) => Math.max(1, i));
  for (const s1 of sizes1) await consistencyProof(log, s1, size);
  const consistency = (performance.now() - t0) / n;
  const s1 = sizes1[0] as number;
  if (!verifyConsistency(s1, size, await consistencyProof(log, s1, size), await rootOf(log, s1), root))
    verified = false;
  return { inclusion, inclusionWithLeaf, consistency, verified };
}

async function rootOf(log: AuditLog, size: number): Promise<Buffer> {
  const { treeRoot } = await import('../src/audit/merkle.ts');
  return treeRoot(log, size);
}

const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

async function main(): Promise<void> {
  const results: Record<string, unknown> = { machine: machine(), date: new Date().toISOString() };
  console.log(
    `machine: ${results.machine}; load average at start ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} (other work on the machine skews every figure)`,
  );
  const signer = generateLogSigner('bench.edgeguard/audit');

  // ---- SQLite durable appends
  if (ONLY === undefined || ONLY === 'appends') {
    const dir = mkdtempSync(join(tmpdir(), 'eg-bench-audit-'));
    try {
      const store = await Store.open({ dataDir: dir });
      const log = await AuditLog.open(store, { signer, checkpointIntervalMs: 0 });
      const sync = (await sql<{ synchronous: number }>`pragma synchronous`.execute(store.db)).rows[0]?.synchronous;
      const ours = await appendRate(log, APPENDS);
      const plain = await plainRate(store, APPENDS, 1024);
      const naive = fsyncRate(dir, quick ? 200 : 2000);
      await log.close();
      await store.close();
      results.sqlite = { appendsPerSec: ours, plainTablePerSec: plain, fsyncPerEventPerSec: naive, synchronous: sync };
      console.log(
        `SQLite (WAL, synchronous=${sync === 2 ? 'FULL' : sync}): ${fmt(ours)} durable appends/s into the Merkle log; plain table ${fmt(plain)}/s (ratio ${(ours / plain).toFixed(2)}); one fsync per event ${fmt(naive)}/s (ratio ${(ours / naive).toFixed(1)}x)`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  // ---- PostgreSQL durable appends
  if (ONLY === undefined || ONLY === 'appends') {
    const db = await tempPg();
    try {
      const store = await Store.open({ url: db.url });
      const log = await AuditLog.open(store, { signer, checkpointIntervalMs: 0 });
      const ours = await appendRate(log, APPENDS);
      const plain = await plainRate(store, APPENDS, 1024);
      // Proofs over the tree just written (PostgreSQL reads go through kysely and the pg pool).
      const proofs = await proofTimes(log, APPENDS, quick ? 200 : 1000);
      await log.close();
      await store.close();
      results.postgres = { appendsPerSec: ours, plainTablePerSec: plain, proofs };
      console.log(
        `PostgreSQL 15 (local, synchronous_commit on): ${fmt(ours)} durable appends/s; plain table ${fmt(plain)}/s (ratio ${(ours / plain).toFixed(2)})`,
      );
      console.log(
        `PostgreSQL tree of ${fmt(APPENDS)} entries: inclusion proof ${fmt(proofs.inclusion * 1000)} us, with leaf ${fmt(proofs.inclusionWithLeaf * 1000)} us, consistency proof ${fmt(proofs.consistency * 1000)} us; verified: ${proofs.verified}`,
      );
    } finally {
      await db.drop();
    }
  }

  // ---- Integration latency (checkpoint every 500 ms, the default)
  for (const backend of ONLY === undefined || ONLY === 'latency' ? (['sqlite', 'postgres'] as const) : []) {
    const dir = mkdtempSync(join(tmpdir(), 'eg-bench-audit-'));
    const db = backend === 'postgres' ? await tempPg() : undefined;
    try {
      const store = await Store.open(db ? { url: db.url } : { dataDir: dir });
      const log = await AuditLog.open(store, { signer, checkpointIntervalMs: 500 });
      const rate = 2000;
      const lat = await integrationLatency(log, rate, quick ? 2 : 5);
      await log.close();
      await store.close();
      (results as Record<string, unknown>)[`${backend}Latency`] = { ...lat, rate };
      console.log(
        `${backend}: integration latency at ${rate} appends/s, checkpoint every 500 ms: avg ${fmt(lat.avg)} ms, p50 ${fmt(lat.p50)} ms, p99 ${fmt(lat.p99)} ms, max ${fmt(lat.max)} ms`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await db?.drop();
    }
  }

  // ---- End to end: device journals forwarded over mutual TLS into the log (SQLite store)
  if (ONLY === undefined || ONLY === 'api') {
    const dir = mkdtempSync(join(tmpdir(), 'eg-bench-audit-api-'));
    const devices = 4;
    const perDevice = quick ? 2_000 : 10_000;
    try {
      const server = await startServer({
        dataDir: join(dir, 'cp'),
        listen: '127.0.0.1:0',
        caPassphrase: randomBytes(16).toString('hex'),
        plugins: [auditServerPlugin({ dataDir: join(dir, 'cp') })],
      });
      try {
        const clients: Array<{ client: FleetClient; journal: Journal }> = [];
        for (let d = 0; d < devices; d++) {
          const keys = await generateP256();
          const deviceId = `dev-${randomBytes(8).toString('hex')}`;
          const store = server.ctx.store;
          await store.insertDevice({
            id: deviceId,
            ek_pub_sha256: randomBytes(32).toString('hex'),
            ek_cert_pem: null,
            ak_public: '',
            ak_name: '',
            binding_public: '',
            key_provider: 'software',
            status: 'pending',
            label: null,
            csr_pem: '',
            poll_token_sha256: randomBytes(32).toString('hex'),
            created_at: new Date().toISOString(),
          });
          await store.approveDevice(deviceId, 'bench');
          const issued = await server.ctx.ca.issueDeviceCertificate({
            deviceId,
            keyProvider: 'software',
            publicKey: await spkiOf(keys.publicKey),
          });
          await store.recordCertificate({
            serial: issued.serial,
            device_id: deviceId,
            role: 'device',
            subject: issued.subject,
            not_before: issued.notBefore.toISOString(),
            not_after: issued.notAfter.toISOString(),
            pem: issued.chainPem,
          });
          const keyPem = await privateKeyToPkcs8Pem(keys.privateKey);
          const key = createPrivateKey(keyPem);
          const journal = await Journal.open(join(dir, `${deviceId}.journal`), journalSignerFromKey(key), key);
          for (let i = 0; i < perDevice; i += 1000)
            await journal.append(
              Array.from({ length: Math.min(1000, perDevice - i) }, (_, k) => ({
                ...event(i + k),
                actor: { kind: 'device' as const, id: deviceId },
              })),
            );
          clients.push({
            client: new FleetClient({
              server: server.url,
              ca: server.ctx.ca.rootPem,
              cert: issued.chainPem,
              key: keyPem,
            }),
            journal,
          });
        }
        const t0 = performance.now();
        const forwards = await Promise.all(clients.map((c) => forwardJournal(c.journal, c.client, { batch: 500 })));
        const seconds = (performance.now() - t0) / 1000;
        const logged = forwards.reduce((a, r) => a + r.logged, 0);
        for (const c of clients) c.client.close();
        if (forwards.some((r) => r.gaps.length > 0) || logged !== devices * perDevice)
          throw new Error('the benchmark lost or mis-chained journal entries');
        const rate = logged / seconds;
        results.api = { devices, logged, seconds, entriesPerSec: rate };
        console.log(
          `HTTPS + mTLS, ${devices} devices forwarding ${perDevice.toLocaleString()} journal entries each in batches of 500 (signature and chain checked per entry): ${fmt(rate)} durable entries/s into the log (SQLite)`,
        );
      } finally {
        await server.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  // ---- Proof generation at large sizes (SQLite)
  for (const size of ONLY === undefined || ONLY === 'proofs' ? PROOF_SIZES : []) {
    const dir = TREE_DIR ? join(TREE_DIR, `tree-${size}`) : mkdtempSync(join(tmpdir(), 'eg-bench-audit-'));
    try {
      let loadSeconds = NaN;
      if (!TREE_DIR || !existsSync(join(dir, 'complete'))) {
        rmSync(dir, { recursive: true, force: true });
        await (await Store.open({ dataDir: dir })).close();
        loadSeconds = bulkLoadSqlite(join(dir, SQLITE_FILE), size);
        writeFileSync(join(dir, 'complete'), String(loadSeconds));
      } else {
        loadSeconds = Number(readFileSync(join(dir, 'complete'), 'utf8'));
      }
      const bytes = statSync(join(dir, SQLITE_FILE)).size;
      const store = await Store.open({ dataDir: dir });
      const log = await AuditLog.open(store, { signer, checkpointIntervalMs: 0 });
      const t = await proofTimes(log, size, quick ? 200 : 2000);
      await log.close();
      await store.close();
      (results as Record<string, unknown>)[`proofs${size}`] = { ...t, loadSeconds, dbBytes: bytes };
      console.log(
        `SQLite tree of ${fmt(size)} entries (built in ${fmt(loadSeconds, 1)} s, ${fmt(bytes / 2 ** 20)} MiB): inclusion proof ${fmt(t.inclusion * 1000)} us, with leaf ${fmt(t.inclusionWithLeaf * 1000)} us, consistency proof ${fmt(t.consistency * 1000)} us; verified: ${t.verified}`,
      );
    } finally {
      if (!TREE_DIR) rmSync(dir, { recursive: true, force: true });
    }
  }
  results.loadAverageAtEnd = loadavg();
  console.log(
    `load average at end ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  console.log(JSON.stringify(results));
}

await main();
