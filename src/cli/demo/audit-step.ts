/**
 * Demo step of the audit log: a device journals security events (signed, hash-chained, fsynced),
 * forwards them to the control plane's Merkle log, the log signs a C2SP checkpoint, an entry is
 * proven against it, a witness checks the log only grew, and two tampering attempts show up: an
 * entry deleted from the device journal (a gap at its position) and a row edited in the store.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { sql } from 'kysely';
import {
  AuditLog,
  DEFAULT_LOG_ORIGIN,
  JOURNAL_MAGIC,
  Journal,
  Witness,
  checkJournalBytes,
  encodeJournalRecord,
  journalSignerFromKey,
  loadOrCreateLogSigner,
  proveEntry,
  storeLogReader,
  type AuditEvent,
} from '../../audit/index.ts';
import { Store } from '../../store/index.ts';
import type { DemoStep } from './context.ts';

function deviceEvents(deviceId: string): AuditEvent[] {
  const time = () => new Date().toISOString();
  const actor = { kind: 'device' as const, id: deviceId };
  return [
    {
      type: 'model.loaded',
      time: time(),
      actor,
      subject: deviceId,
      outcome: 'success',
      details: { modelSha256: '5e'.repeat(32), name: 'mnist-mlp', keyProvider: 'software' },
    },
    {
      type: 'guard.rejected',
      time: time(),
      actor,
      subject: deviceId,
      outcome: 'denied',
      details: { check: 'feature-squeezing', score: 1_312_000, threshold: 905_000, queuedForReview: true },
    },
    {
      type: 'tamper.detected',
      time: time(),
      actor,
      subject: deviceId,
      outcome: 'failure',
      details: { sensor: 'case-switch', detail: 'enclosure opened' },
    },
    {
      type: 'device.locked',
      time: time(),
      actor,
      subject: deviceId,
      outcome: 'success',
      details: { reason: 'tamper sensor tripped' },
    },
  ];
}

export const auditStep: DemoStep = {
  id: 'audit',
  title:
    'Tamper-evident audit: device journal -> Merkle log -> signed checkpoint, inclusion proof, witness, tampering detected',
  async run(ctx) {
    const dataDir = ctx.path('control-plane');
    const deviceId = 'dev-00000000000000d1';
    // The same origin as `edgeguard server`'s log, so this log and the control plane's are one.
    const signer = await loadOrCreateLogSigner(dataDir, DEFAULT_LOG_ORIGIN);
    const store = await Store.open({ dataDir });
    try {
      const log = await AuditLog.open(store, { signer, checkpointIntervalMs: 0 });
      // Server-side events.
      await log.append({
        type: 'device.approved',
        time: new Date().toISOString(),
        actor: { kind: 'admin', id: 'alice' },
        subject: deviceId,
        outcome: 'success',
        details: { deviceId, approvedBy: 'alice' },
      });

      // The device's journal: a demo key in memory (a real agent signs with its certificate key).
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const journalPath = ctx.path('device-audit.journal');
      const journal = await Journal.open(journalPath, journalSignerFromKey(privateKey), publicKey);
      const devicePub = ctx.path('device-journal.pub');
      await writeFile(devicePub, publicKey.export({ type: 'spki', format: 'pem' }));
      const entries = await journal.append(deviceEvents(deviceId));
      ctx.say(
        `device ${deviceId} journaled ${entries.length} events (ECDSA P-256 signed, hash-chained, one fsync): ${entries.map((e) => e.event.type).join(', ')}`,
      );
      const forwarded = await log.appendDeviceRecords(
        deviceId,
        publicKey,
        entries.map((e) => encodeJournalRecord(e).subarray(4)),
      );
      ctx.say(
        `forwarded to the log: indices ${forwarded.entries.map((e) => e.index).join(', ')}; chain continuity checked, ${forwarded.gaps.length} gaps`,
      );

      const cp = await log.publishCheckpoint();
      ctx.command(`audit checkpoint --data ${dataDir}`);
      for (const line of cp.note.trimEnd().split('\n')) ctx.say(`  ${line}`);

      const tamperIndex = forwarded.entries[2]!.index!;
      const reader = storeLogReader(log, store.where);
      const proven = await proveEntry(reader, log.verifier, tamperIndex);
      ctx.command(`audit prove ${tamperIndex} --data ${dataDir}`);
      ctx.say(
        `entry ${tamperIndex} (${proven.leaf.event.type}) is in the signed tree of ${proven.checkpoint.checkpoint.size}: inclusion proof of ${proven.proof.length} hashes verified`,
      );

      // A witness trusts this checkpoint, the log grows, the witness checks consistency.
      const witness = await Witness.load(log.verifier, ctx.path('witness.checkpoint'));
      await witness.observe(cp.note, (a, b) => log.consistencyProof(a, b));
      await log.append({
        type: 'policy.changed',
        time: new Date().toISOString(),
        actor: { kind: 'admin', id: 'alice' },
        outcome: 'success',
        details: { policy: 'egress-allowlist', newSha256: 'c0'.repeat(32) },
      });
      const cp2 = await log.publishCheckpoint();
      const seen = await witness.observe(cp2.note, (a, b) => log.consistencyProof(a, b));
      ctx.command(`audit verify --data ${dataDir} --state ${ctx.path('witness.checkpoint')}`);
      ctx.say(
        `witness: the log grew from ${seen.previousSize} to ${seen.checkpoint.checkpoint.size} entries without rewriting history`,
      );

      // Tampering 1: someone with root on the device deletes the guard rejection from the journal.
      const bytes = await readFile(journalPath);
      const first = JOURNAL_MAGIC.length + 4 + bytes.readUInt32BE(JOURNAL_MAGIC.length);
      const second = first + 4 + bytes.readUInt32BE(first);
      const cut = ctx.path('device-audit.journal.tampered');
      await writeFile(cut, Buffer.concat([bytes.subarray(0, first), bytes.subarray(second)]));
      const gaps = checkJournalBytes(await readFile(cut), publicKey).gaps;
      ctx.command(`audit journal ${cut} --device-key ${devicePub}`);
      ctx.say(
        `deleted journal entry detected: ${gaps.map((g) => `gap at position ${g.position} (expected seq ${g.expectedSeq}, found ${g.foundSeq})`).join('; ')}`,
      );
      if (gaps.length === 0) throw new Error('the deleted journal entry was not detected');

      // Tampering 2: an insider edits the stored tamper event in the database.
      await sql`update audit_entries set leaf = replace(leaf, 'enclosure opened', 'routine service') where idx = ${tamperIndex}`.execute(
        store.db,
      );
      const report = await log.checkConsistency();
      ctx.command(`audit verify --data ${dataDir} --full`);
      ctx.say(
        `edited row detected: ${report.problems.find((p) => /log entry/.test(p)) ?? report.problems[0] ?? 'NOT DETECTED'}`,
      );
      if (report.problems.length === 0) throw new Error('the edited row was not detected');
      await log.close();
      ctx.state.auditDataDir = dataDir;
      return {
        checkpointSize: cp2.size,
        provenIndex: tamperIndex,
        journalGaps: gaps.length,
        storeProblems: report.problems.length,
      };
    } finally {
      await store.close();
    }
  },
};
