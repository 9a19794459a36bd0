/**
 * A separate server process for the concurrency test: opens the PostgreSQL store given as argv[2]
 * and appends argv[4] events tagged with worker name argv[3], as fast as it can.
 */
import { Store } from '../../src/store/index.ts';
import { createPrivateKey } from 'node:crypto';
import { AuditLog, noteSigner, type AuditEvent } from '../../src/audit/index.ts';

const [url, name, countText] = process.argv.slice(2) as [string, string, string];
const count = Number(countText);
const store = await Store.open({ url, poolSize: 4 });
// Every replica holds the same log key (handed over in memory through the environment) and signs
// checkpoints every 50 ms while the other one appends: no alarm may fire.
const signer = noteSigner(
  'edgeguard.test/audit',
  createPrivateKey(Buffer.from(process.env.EG_TEST_LOG_KEY ?? '', 'base64').toString('utf8')),
);
const alarms: string[] = [];
const log = await AuditLog.open(store, {
  signer,
  checkpointIntervalMs: 50,
  maxBatch: 512,
  onAlarm: (e) => alarms.push(e.message),
});
const events: AuditEvent[] = Array.from({ length: count }, (_, i) => ({
  type: 'admin.action',
  time: new Date().toISOString(),
  actor: { kind: 'server', id: name },
  subject: `${name}-${i}`,
  outcome: 'success',
  details: { action: 'concurrency-test', target: `${name}-${i}` },
}));
// Several waves so the two processes' transactions interleave.
let max = -1;
for (let i = 0; i < count; i += 2000) {
  const r = await log.appendMany(events.slice(i, i + 2000));
  for (const x of r) max = Math.max(max, x.index);
}
await log.close();
await store.close();
process.stdout.write(JSON.stringify({ name, appended: count, maxIndex: max, alarms }) + '\n');
