/**
 * Appraisal on a real swtpm: a boot played into it, quoted by its AK and appraised against the
 * policy made from the golden log, passes; each tampering fails with its own reason. The device
 * is rebooted (swtpm restarted on the same state: PCRs reset, same EK and AK) for each boot.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { createHash, randomBytes } from 'node:crypto';
import {
  appraiseBootEvidence,
  createBootPolicy,
  type BootPolicy,
  type QuoteClock,
  type Verdict,
} from '../../src/attest/index.ts';
import {
  EV,
  defaultSyntheticBoot,
  parseEventLog,
  playBoot,
  replayEventLog,
  syntheticBootEvents,
  type SyntheticBoot,
} from '../../src/eventlog/index.ts';
import { TPM_ALG, TpmClient, parseTpm2bPublic, parseTpmsAttest, type EndorsementKeys } from '../../src/tpm/index.ts';
import {
  TPM_SKIP,
  startTestTpm,
  startTestTpmWithAk,
  stopTestTpm,
  type Swtpm,
  type TestTpmWithAk,
} from '../helpers/swtpm.ts';

const BANKS = [TPM_ALG.SHA256];

interface Booted {
  log: Buffer;
  quote: (nonce: Buffer) => Promise<{ quote: Buffer; signature: Buffer }>;
}

describe('appraisal of a played boot on swtpm', { skip: TPM_SKIP }, () => {
  let device: TestTpmWithAk;
  let other: TestTpmWithAk;
  let running: Swtpm;
  let policy: BootPolicy;

  /** Power-cycle the device's swtpm and play `boot` into it (golden.quote works only before the first reboot). */
  async function reboot(boot: SyntheticBoot): Promise<Booted> {
    // An orderly TPM2_Shutdown first, as an OS does; a TPM powered off without one counts it
    // against dictionary-attack protection and soon locks out.
    execFileSync('tpm2_shutdown', [], { env: { ...process.env, TPM2TOOLS_TCTI: running.tcti } });
    await running.stop();
    running = await startTestTpm({ stateDir: device.tpm.stateDir, ca: device.tpm.ca });
    const client = new TpmClient({ tcti: running.tcti });
    const log = await playBoot(client, BANKS, syntheticBootEvents(boot, BANKS));
    return { log, quote: (nonce) => quoteWith(client, device.keys, policy, nonce) };
  }

  async function quoteWith(client: TpmClient, keys: EndorsementKeys, p: BootPolicy, nonce: Buffer) {
    const q = await client.attestation.quote(keys.ak, p.pcrs, nonce);
    return { quote: q.attest, signature: q.signature };
  }

  function appraise(
    log: Buffer,
    quoted: { quote: Buffer; signature: Buffer },
    nonce: Buffer,
    previousClock?: QuoteClock,
  ): Verdict {
    const akPublic = parseTpm2bPublic(device.keys.ak.public);
    return appraiseBootEvidence({ akPublic, evidence: { ...quoted, eventLog: log }, nonce, policy, previousClock });
  }

  const codes = (v: Verdict) => [...new Set(v.reasons.map((r) => r.code))];

  let golden: Booted;
  before(async () => {
    device = await startTestTpmWithAk();
    other = await startTestTpmWithAk();
    running = device.tpm;
    const client = new TpmClient({ tcti: running.tcti });
    const log = await playBoot(client, BANKS, syntheticBootEvents(defaultSyntheticBoot(), BANKS));
    policy = createBootPolicy(parseEventLog(log));
    golden = { log, quote: (nonce) => quoteWith(client, device.keys, policy, nonce) };
  });
  after(async () => {
    await stopTestTpm(running);
    await stopTestTpm(device?.tpm);
    await stopTestTpm(other?.tpm);
  });

  test('the golden boot passes', async () => {
    const nonce = randomBytes(32);
    const quoted = await golden.quote(nonce);
    const v = appraise(golden.log, quoted, nonce);
    assert.deepEqual(
      { pass: v.pass, reasons: v.reasons, codes: v.codes, events: v.events },
      { pass: true, reasons: [], codes: [], events: [] },
    );
    // The clock kept as the device's last accepted quote is the signed one.
    const { clockInfo } = parseTpmsAttest(quoted.quote);
    assert.deepEqual(v.acceptedClock, {
      clock: clockInfo.clock,
      resetCount: clockInfo.resetCount,
      restartCount: clockInfo.restartCount,
    });
    assert.equal(policy.secureBoot?.required, true);
  });

  test('clock rules against the last accepted quote: a later one passes, an earlier TPM state fails in order', async () => {
    const nonce = randomBytes(32);
    const quoted = await golden.quote(nonce);
    const now = parseTpmsAttest(quoted.quote).clockInfo;
    const before = { clock: now.clock - 1n, resetCount: now.resetCount, restartCount: now.restartCount };
    assert.equal(appraise(golden.log, quoted, nonce, before).pass, true);
    const ahead = { ...before, resetCount: now.resetCount + 1 };
    const v = appraise(golden.log, quoted, nonce, ahead);
    assert.deepEqual(v.codes, ['RESET_COUNT_DECREASED']);
    assert.equal(v.acceptedClock, undefined);
    // With the log edited too: the quote's failure first, then the clock's, each code once.
    const kernel = parseEventLog(golden.log).events.find((e) => e.pcr === 9 && e.data.includes('vmlinuz'))!;
    const edited = Buffer.from(golden.log);
    edited[kernel.offset + 14] = edited[kernel.offset + 14]! ^ 0xff;
    assert.deepEqual(appraise(edited, quoted, nonce, ahead).codes, ['PCRS_DO_NOT_MATCH_LOG', 'RESET_COUNT_DECREASED']);
  });

  test('nonce mismatch', async () => {
    const v = appraise(golden.log, await golden.quote(randomBytes(32)), randomBytes(32));
    assert.deepEqual(codes(v), ['NONCE_MISMATCH']);
  });

  test("quote by another TPM's AK", async () => {
    const nonce = randomBytes(32);
    const client = new TpmClient({ tcti: other.tpm.tcti });
    await playBoot(client, BANKS, syntheticBootEvents(defaultSyntheticBoot(), BANKS));
    const v = appraise(golden.log, await quoteWith(client, other.keys, policy, nonce), nonce);
    assert.deepEqual(codes(v), ['QUOTE_SIGNATURE_INVALID']);
  });

  test('log edited: a digest changed (the quote no longer matches) or data changed (digest no longer matches)', async () => {
    const nonce = randomBytes(32);
    const quoted = await golden.quote(nonce);
    const parsed = parseEventLog(golden.log);
    const kernel = parsed.events.find((e) => e.pcr === 9 && e.data.includes('vmlinuz'))!;
    const digestEdited = Buffer.from(golden.log);
    digestEdited.writeUInt8(digestEdited.readUInt8(kernel.offset + 14) ^ 0xff, kernel.offset + 14);
    assert.deepEqual(codes(appraise(digestEdited, quoted, nonce)), ['PCRS_DO_NOT_MATCH_LOG']);
    const secureBoot = parsed.events.find((e) => e.pcr === 7 && e.data.includes(Buffer.from('SecureBoot', 'utf16le')))!;
    const dataEdited = Buffer.from(golden.log);
    dataEdited[parsed.events[secureBoot.sequence + 1]!.offset - 1] = 0;
    // The edited variable is not believed, so Secure Boot is no longer shown to be on either.
    assert.deepEqual(codes(appraise(dataEdited, quoted, nonce)), ['EVENT_UNVERIFIED', 'SECURE_BOOT_DISABLED']);
  });

  test('event relabelled: the kernel image labelled as an action', async () => {
    const nonce = randomBytes(32);
    const quoted = await golden.quote(nonce);
    const parsed = parseEventLog(golden.log);
    const images = parsed.events.filter((e) => e.pcr === 4 && e.type === EV.EFI_BOOT_SERVICES_APPLICATION);
    const relabelled = Buffer.from(golden.log);
    relabelled.writeUInt32LE(EV.EFI_ACTION, images.at(-1)!.offset + 4);
    assert.deepEqual(codes(appraise(relabelled, quoted, nonce)), ['EVENT_RELABELLED']);
  });

  /**
   * A changed quote or signature never passes. A changed log may pass only if its digests are
   * untouched (data the PCRs do not cover, in events the policy does not read, such as a PCR 5
   * separator's bytes): then it replays to the same PCRs. Nothing throws.
   */
  test('mutated evidence: quote and signature never pass, a log only with the same replay (2,000 cases)', async () => {
    const nonce = randomBytes(32);
    const quoted = await golden.quote(nonce);
    const flip = (b: Buffer, at: number, value: number) => {
      const out = Buffer.from(b);
      if (out.length > 0) out[at % out.length] = value;
      return out;
    };
    const part = fc.constantFrom('quote' as const, 'signature' as const, 'eventLog' as const);
    fc.assert(
      fc.property(part, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.nat(), (which, at, value, cut) => {
        const evidence = { ...quoted, eventLog: golden.log };
        const original = evidence[which];
        let mutated = flip(original, at, value);
        if (cut % 3 === 0) mutated = mutated.subarray(0, cut % (mutated.length + 1));
        fc.pre(!mutated.equals(original));
        evidence[which] = mutated;
        const akPublic = parseTpm2bPublic(device.keys.ak.public);
        const v = appraiseBootEvidence({ akPublic, evidence, nonce, policy });
        assert.equal(v.pass, v.reasons.length === 0);
        if (which !== 'eventLog') assert.equal(v.pass, false);
        else if (v.pass)
          assert.deepEqual(replayEventLog(parseEventLog(mutated)), replayEventLog(parseEventLog(golden.log)));
      }),
      { numRuns: 2_000 },
    );
  });

  test('Secure Boot off', async () => {
    const booted = await reboot({ ...defaultSyntheticBoot(), secureBoot: false });
    const nonce = randomBytes(32);
    assert.deepEqual(codes(appraise(booted.log, await booted.quote(nonce), nonce)), ['SECURE_BOOT_DISABLED']);
  });

  test('dbx missing a required entry', async () => {
    const boot = defaultSyntheticBoot();
    const booted = await reboot({ ...boot, dbx: boot.dbx.slice(1) });
    const nonce = randomBytes(32);
    assert.deepEqual(codes(appraise(booted.log, await booted.quote(nonce), nonce)), ['DBX_MISSING_ENTRY']);
  });

  test('kernel digest not in the policy', async () => {
    const booted = await reboot({ ...defaultSyntheticBoot(), kernel: Buffer.from('vmlinuz-6.1.0-evil') });
    const nonce = randomBytes(32);
    const v = appraise(booted.log, await booted.quote(nonce), nonce);
    assert.deepEqual(codes(v), ['KERNEL_NOT_ALLOWED']);
    const evil = createHash('sha256').update('vmlinuz-6.1.0-evil').digest('hex');
    assert.ok(v.reasons.every((r) => r.detail.includes(evil)));
  });

  test('PCR extended after boot', async () => {
    const booted = await reboot(defaultSyntheticBoot());
    const nonce = randomBytes(32);
    assert.deepEqual(codes(appraise(booted.log, await booted.quote(nonce), nonce)), []);
    await new TpmClient({ tcti: running.tcti }).extendPcr(4, 'sha256', randomBytes(32));
    const again = randomBytes(32);
    assert.deepEqual(codes(appraise(booted.log, await booted.quote(again), again)), ['PCRS_DO_NOT_MATCH_LOG']);
  });
});
