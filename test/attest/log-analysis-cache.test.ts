/**
 * The log analyses kept between appraisals: a verdict with the cache is the verdict without it
 * (fixtures and random edits of a real log and of its policy), a changed log or policy misses, the
 * quote is still checked on a hit, and the cache stays inside its bounds.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  LogAnalysisCache,
  appraiseBootEvidence,
  createBootPolicy,
  type BootPolicy,
  type Verdict,
} from '../../src/attest/index.ts';
import { parseEventLog, replayEventLog, replayedPcrsFor } from '../../src/eventlog/index.ts';
import {
  TPM_ALG,
  TpmWriter,
  marshalPcrSelection,
  objectName,
  parsePcrSelection,
  pcrCompositeDigest,
  type PcrValues,
} from '../../src/tpm/index.ts';
import { AK_ATTRS, rsaPublic } from './tpm-public-builder.ts';

const LOG = readFileSync(
  join(import.meta.dirname, '..', 'eventlog', 'fixtures', 'ubuntu_2104_shielded_vm_no_secure_boot_eventlog'),
);
const GOLDEN = createBootPolicy(parseEventLog(LOG));
const AK = rsaPublic({ attributes: AK_ATTRS, sign: true });
const AK_NAME = objectName(AK.pub);

/** A TPM2_Quote (TPMS_ATTEST, Part 2 10.12.12) over `replayed` at the policy's PCRs, signed by the AK. */
function quoteOver(replayed: PcrValues, policy: BootPolicy, nonce: Buffer, clock = 1000n) {
  const sel = parsePcrSelection(policy.pcrs);
  const quote = new TpmWriter()
    .u32(0xff544347)
    .u16(0x8018)
    .tpm2b(AK_NAME)
    .tpm2b(nonce)
    .u32(Number(clock >> 32n))
    .u32(Number(clock & 0xffffffffn))
    .u32(0)
    .u32(0)
    .u8(1)
    .u32(0)
    .u32(0)
    .bytes(marshalPcrSelection(sel))
    .tpm2b(pcrCompositeDigest(sel, replayedPcrsFor(replayed, sel), TPM_ALG.SHA256))
    .toBuffer();
  const signature = new TpmWriter()
    .u16(0x0014)
    .u16(0x000b)
    .tpm2b(sign('sha256', quote, AK.privateKey!))
    .toBuffer();
  return { quote, signature };
}

function replayOrUndefined(log: Buffer): PcrValues | undefined {
  try {
    return replayEventLog(parseEventLog(log));
  } catch {
    return undefined;
  }
}

/** The same evidence appraised without a cache, then twice with `cache` (a miss or a hit, then a hit). */
function appraiseThreeWays(log: Buffer, quoted: PcrValues, policy: BootPolicy, cache: LogAnalysisCache) {
  const nonce = randomBytes(32);
  const evidence = { ...quoteOver(quoted, policy, nonce), eventLog: log };
  const input = { akPublic: AK.pub, evidence, nonce, policy };
  return [
    appraiseBootEvidence(input),
    appraiseBootEvidence({ ...input, cache }),
    appraiseBootEvidence({ ...input, cache }),
  ] as const;
}

const codes = (v: Verdict) => v.codes;

describe('log analysis cache', () => {
  const golden = replayEventLog(parseEventLog(LOG));

  test('the golden boot passes, misses once, then hits; the verdicts are identical', () => {
    const cache = new LogAnalysisCache();
    const [plain, first, second] = appraiseThreeWays(LOG, golden, GOLDEN, cache);
    assert.equal(plain.pass, true, JSON.stringify(plain.reasons));
    assert.deepEqual(first, plain);
    assert.deepEqual(second, plain);
    assert.deepEqual({ hits: cache.hits, misses: cache.misses, size: cache.size }, { hits: 1, misses: 1, size: 1 });
  });

  test('a changed log misses the cache, and its own verdict is kept', () => {
    const cache = new LogAnalysisCache();
    appraiseThreeWays(LOG, golden, GOLDEN, cache);
    // Another kernel: the SHA-256 digest of the last PCR 9 event edited, quoted as that log replays.
    const last = parseEventLog(LOG)
      .events.filter((e) => e.pcr === 9)
      .at(-1)!;
    const digest = last.digests.find((d) => d.alg === TPM_ALG.SHA256)!.digest;
    const edited = Buffer.from(LOG);
    const at = LOG.indexOf(digest);
    edited[at] = edited[at]! ^ 0x01;
    const [plain, first, second] = appraiseThreeWays(edited, replayEventLog(parseEventLog(edited)), GOLDEN, cache);
    assert.equal(cache.misses, 2);
    assert.equal(cache.size, 2);
    assert.deepEqual(first, plain);
    assert.deepEqual(second, plain);
    assert.equal(plain.pass, false);
    assert.ok(!codes(plain).includes('PCRS_DO_NOT_MATCH_LOG'), JSON.stringify(plain.codes));
  });

  test('a changed policy misses the cache', () => {
    const cache = new LogAnalysisCache();
    appraiseThreeWays(LOG, golden, GOLDEN, cache);
    const strict: BootPolicy = { ...GOLDEN, secureBoot: { ...GOLDEN.secureBoot!, required: true } };
    const [plain, first] = appraiseThreeWays(LOG, golden, strict, cache);
    assert.deepEqual(codes(plain), ['SECURE_BOOT_DISABLED']);
    assert.deepEqual(first, plain);
    assert.equal(cache.misses, 2);
    // An equal policy in another object has the same content: it hits.
    const copy = structuredClone(GOLDEN);
    const [, again] = appraiseThreeWays(LOG, golden, copy, cache);
    assert.equal(again.pass, true);
    assert.equal(cache.misses, 2);
  });

  test('on a hit the quote is still checked: PCRs extended after boot, a wrong nonce, a bad signature', () => {
    const cache = new LogAnalysisCache();
    appraiseThreeWays(LOG, golden, GOLDEN, cache);
    const extended: PcrValues = { sha256: { ...golden.sha256!, 9: Buffer.alloc(32, 0xee) } };
    const [plain, first, second] = appraiseThreeWays(LOG, extended, GOLDEN, cache);
    assert.deepEqual(codes(plain), ['PCRS_DO_NOT_MATCH_LOG']);
    assert.deepEqual(first, plain);
    assert.deepEqual(second, plain);
    assert.ok(cache.hits >= 2);

    const nonce = randomBytes(32);
    const evidence = { ...quoteOver(golden, GOLDEN, nonce), eventLog: LOG };
    const other = appraiseBootEvidence({ akPublic: AK.pub, evidence, nonce: randomBytes(32), policy: GOLDEN, cache });
    assert.deepEqual(codes(other), ['NONCE_MISMATCH']);
    const forged = Buffer.from(evidence.signature);
    forged[forged.length - 1] = forged.at(-1)! ^ 1;
    const bad = { ...evidence, signature: forged };
    const v = appraiseBootEvidence({ akPublic: AK.pub, evidence: bad, nonce, policy: GOLDEN, cache });
    assert.deepEqual(codes(v), ['QUOTE_SIGNATURE_INVALID']);
  });

  test('random edits of the log and the policy: the same verdict with and without the cache', () => {
    const cache = new LogAnalysisCache({ maxEntries: 8 });
    const policies: BootPolicy[] = [
      GOLDEN,
      { ...GOLDEN, secureBoot: { ...GOLDEN.secureBoot!, required: true } },
      { ...GOLDEN, bootComponents: { ...GOLDEN.bootComponents, kernel: [] } },
      createBootPolicy(parseEventLog(LOG), { exactPcrs: true }),
      { version: 1, pcrs: GOLDEN.pcrs, exactPcrs: { sha256: { '9': '00'.repeat(32) } } },
    ];
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat({ max: LOG.length - 1 }), xor: fc.integer({ min: 1, max: 255 }) }), {
          maxLength: 2,
        }),
        fc.nat({ max: policies.length - 1 }),
        fc.boolean(),
        (edits, p, quoteTheEditedLog) => {
          const log = Buffer.from(LOG);
          for (const { at, xor } of edits) log[at] = log[at]! ^ xor;
          const quoted = (quoteTheEditedLog && replayOrUndefined(log)) || golden;
          const [plain, first, second] = appraiseThreeWays(log, quoted, policies[p]!, cache);
          assert.deepEqual(first, plain);
          assert.deepEqual(second, plain);
        },
      ),
      { numRuns: 150 },
    );
    assert.ok(cache.size <= 8);
  });

  test('bounded by entries and by bytes, least recently used out first', () => {
    const analysis = { values: { sha256: { 0: Buffer.alloc(32) } }, reasons: [] };
    const byCount = new LogAnalysisCache({ maxEntries: 2 });
    byCount.set('a', analysis);
    byCount.set('b', analysis);
    assert.ok(byCount.get('a'));
    byCount.set('c', analysis);
    assert.deepEqual(
      [byCount.get('a') !== undefined, byCount.get('b'), byCount.get('c') !== undefined],
      [true, undefined, true],
    );
    const byBytes = new LogAnalysisCache({ maxBytes: 2000 });
    for (const k of ['a', 'b', 'c', 'd']) byBytes.set(k, analysis);
    assert.ok(byBytes.bytes <= 2000);
    assert.ok(byBytes.size < 4 && byBytes.size >= 1);
    assert.ok(byBytes.get('d'));
    const huge = { values: {}, reasons: [{ code: 'LOG_MALFORMED' as const, detail: 'x'.repeat(5000) }] };
    byBytes.set('huge', huge);
    assert.equal(byBytes.get('huge'), undefined);
  });
});
