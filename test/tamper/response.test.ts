/**
 * The tamper response against a real swtpm: the steps run in order, each timed; the tamper PCR is
 * extended with the digest of the tamper.detected event (checked against the PCR's new value); a
 * step that fails or hangs does not stop the later ones; the lock state is written 0600 and
 * durably, survives as "locked", and is cleared only with a new binding key.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '../../src/audit/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  LOCK_STATE_FILE,
  TAMPER_RESPONSE_STEPS,
  TamperGuard,
  clearTamperLock,
  isLocked,
  parseTamperConfig,
  readLockState,
  respondToTamper,
  tamperPcrDigest,
  type TamperActions,
  type TamperFinding,
} from '../../src/tamper/index.ts';
import { TpmClient } from '../../src/tpm/index.ts';
import { TPM_SKIP, startTestTpm, stopTestTpm, type Swtpm } from '../helpers/swtpm.ts';

const BINDING_KEY = 'A'.repeat(43);
const NEW_BINDING_KEY = 'B'.repeat(43);

function finding(sensor = 'chassis'): TamperFinding {
  return { sensor, kind: 'intrusion', cause: 'tampered', detail: 'intrusion0_alarm = 1', at: new Date() };
}

/** Actions that record the order they were called in and what they were given. */
function recordingActions(overrides: Partial<TamperActions> = {}) {
  const calls: string[] = [];
  const journaled: AuditEvent[] = [];
  const notified: AuditEvent[] = [];
  const actions: TamperActions = {
    stopServing: () => void calls.push('stopServing'),
    wipeSecrets: () => void calls.push('wipeSecrets'),
    journal: (events) => {
      calls.push('journal');
      journaled.push(...events);
    },
    notifyControlPlane: (events) => {
      calls.push('notify');
      notified.push(...events);
    },
    ...overrides,
  };
  return { actions, calls, journaled, notified };
}

describe('tamper response', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm | undefined;
  let client: TpmClient;
  let base: string;
  const stateDir = () => mkdtemp(join(base, 'state-'));

  before(async () => {
    tpm = await startTestTpm();
    client = new TpmClient({ tcti: tpm.tcti });
    base = await mkdtemp(join(tmpdir(), 'eg-tamper-response-'));
  });
  after(async () => {
    await stopTestTpm(tpm);
    if (base) await rm(base, { recursive: true, force: true });
  });

  const options = (dir: string, actions: TamperActions) => ({
    actions,
    tpm: client,
    pcr: { index: 16, bank: 'sha256' as const },
    stateDir: dir,
    deviceId: 'dev-1',
    bindingKey: BINDING_KEY,
    stepTimeoutMs: 5000,
  });

  test('steps run in order, each timed; PCR 16 = H(old || H(tamper.detected)); events journaled and sent', async () => {
    const dir = await stateDir();
    const rec = recordingActions();
    const before16 = (await client.readPcrs('sha256:16')).sha256![16]!;
    const report = await respondToTamper(finding(), options(dir, rec.actions));
    assert.equal(report.ok, true, JSON.stringify(report.steps));
    assert.deepEqual(
      report.steps.map((s) => s.step),
      [...TAMPER_RESPONSE_STEPS],
    );
    for (const s of report.steps) assert.ok(s.ms >= 0 && Number.isFinite(s.ms));
    assert.deepEqual(rec.calls, ['stopServing', 'wipeSecrets', 'journal', 'notify']);
    const after16 = (await client.readPcrs('sha256:16')).sha256![16]!;
    const digest = tamperPcrDigest(report.events[0]!, 'sha256');
    assert.deepEqual(after16, createHash('sha256').update(before16).update(digest).digest());
    assert.equal(report.lockState.pcr.digest, digest.toString('hex'));
    assert.deepEqual(
      rec.journaled.map((e) => e.type),
      ['tamper.detected', 'device.locked'],
    );
    assert.deepEqual(rec.notified, rec.journaled);
    assert.equal(rec.journaled[1]!.outcome, 'success');
    // The lock state: 0600, no temporary file left beside it, and it reads back as locked.
    assert.equal((await stat(join(dir, LOCK_STATE_FILE))).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(dir), [LOCK_STATE_FILE]);
    assert.equal(await isLocked(dir), true);
    assert.deepEqual(await readLockState(dir), report.lockState);
  });

  test('a failing or hanging step is reported and the later steps still run (fail closed)', async () => {
    const dir = await stateDir();
    const rec = recordingActions({
      stopServing: () => {
        throw new Error('listener already closed');
      },
      wipeSecrets: () => new Promise<void>(() => undefined),
    });
    // Long enough for a real PCR extend on a busy machine; the hanging wipe waits it out.
    const report = await respondToTamper(finding(), { ...options(dir, rec.actions), stepTimeoutMs: 5000 });
    assert.equal(report.ok, false);
    const byName = Object.fromEntries(report.steps.map((s) => [s.step, s]));
    assert.equal(byName.stopServing!.error?.code, 'EG_INTERNAL');
    assert.equal(byName.wipeSecrets!.error?.code, 'EG_TIMEOUT');
    for (const s of ['persistLock', 'extendPcr', 'journal', 'notify']) assert.equal(byName[s]!.ok, true, s);
    assert.equal(await isLocked(dir), true);
    const locked = rec.journaled[1]!;
    assert.equal(locked.outcome, 'failure');
    assert.match(JSON.stringify(locked.details), /failed steps: stopServing, wipeSecrets/);
  });

  test('without a TPM the extend step fails with a sentence and the device is locked all the same', async () => {
    const dir = await stateDir();
    const rec = recordingActions();
    const report = await respondToTamper(finding(), { ...options(dir, rec.actions), tpm: undefined });
    const extend = report.steps.find((s) => s.step === 'extendPcr')!;
    assert.equal(extend.error?.code, 'EG_TPM_UNAVAILABLE');
    assert.equal(await isLocked(dir), true);
    assert.deepEqual(rec.calls, ['stopServing', 'wipeSecrets', 'journal', 'notify']);
  });

  test('the lock is cleared only with a new binding key; a damaged lock file counts as locked', async () => {
    const dir = await stateDir();
    await respondToTamper(finding(), options(dir, recordingActions().actions));
    await assert.rejects(clearTamperLock(dir, BINDING_KEY), (e: unknown) => isEdgeguardError(e, 'EG_LOCKED'));
    assert.equal(await isLocked(dir), true);
    await clearTamperLock(dir, NEW_BINDING_KEY);
    assert.equal(await isLocked(dir), false);
    assert.equal(await readLockState(dir), undefined);

    await writeFile(join(dir, LOCK_STATE_FILE), '{"type":"edgeguard-tamper-lock"');
    assert.equal(await isLocked(dir), true);
    await assert.rejects(readLockState(dir), (e: unknown) => isEdgeguardError(e, 'EG_LOCKED'));
    await clearTamperLock(dir, NEW_BINDING_KEY);
    assert.equal(await isLocked(dir), false);
  });

  test('TamperGuard refuses to start on a locked device', async () => {
    const dir = await stateDir();
    await respondToTamper(finding(), options(dir, recordingActions().actions));
    const guard = new TamperGuard(parseTamperConfig({ sensors: [{ kind: 'command', name: 'p', argv: ['true'] }] }), {
      ...options(dir, recordingActions().actions),
      onLocked: () => undefined,
    });
    await assert.rejects(
      guard.start(),
      (e: unknown) => isEdgeguardError(e, 'EG_LOCKED') && /chassis \(intrusion\) reported tampering/.test(String(e)),
    );
  });
});
