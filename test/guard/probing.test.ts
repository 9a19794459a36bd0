import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ProbingMonitor, SKETCH_SIZE, sketch, type ProbingSettings } from '../../src/guard/index.ts';
import { loadMnist, mnistSplit, digitPixels, mulberry32 } from '../../scripts/lib/mnist-split.ts';

const SETTINGS: ProbingSettings = {
  budget: { capacity: 5, refillPerSecond: 2 },
  nearDuplicates: { enabled: true, history: 16, tolerance: 0.01, neighbours: 4 },
  blockMs: 30_000,
  maxClients: 3,
};

function clock(): { now: () => number; advance(ms: number): void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

test('the query budget: a burst of capacity, then refused until tokens refill', () => {
  const c = clock();
  const m = new ProbingMonitor(SETTINGS, c.now);
  for (let i = 0; i < 5; i++) assert.deepEqual(m.admit('a'), { allowed: true });
  const refused = m.admit('a');
  assert.equal(refused.allowed, false);
  assert.ok(!refused.allowed && refused.reason === 'budget' && refused.record && refused.retryAfterS === 1);
  // Refused again while empty, but recorded once per episode.
  const again = m.admit('a');
  assert.ok(!again.allowed && !again.record);
  // Another client has its own bucket.
  assert.deepEqual(m.admit('b'), { allowed: true });
  // Half a second refills one token (2 per second).
  c.advance(500);
  assert.deepEqual(m.admit('a'), { allowed: true });
  assert.equal(m.admit('a').allowed, false);
  // Ten seconds refill the whole bucket, not more than capacity.
  c.advance(10_000);
  for (let i = 0; i < 5; i++) assert.deepEqual(m.admit('a'), { allowed: true });
  assert.equal(m.admit('a').allowed, false);
});

test('near-duplicates trip the detector and block the client; exact repeats and varied inputs do not', () => {
  const c = clock();
  const m = new ProbingMonitor(SETTINGS, c.now);
  const data = loadMnist();
  const digits = mnistSplit(data.count).evaluation.slice(0, 40);
  // Varied traffic: forty different digits from one client.
  for (const idx of digits) assert.deepEqual(m.observe('camera', digitPixels(data, idx)), { allowed: true });
  // The same input again and again (a retry, a still scene): nothing new is learnt.
  const x = Float32Array.from(digitPixels(data, digits[0]!));
  for (let i = 0; i < 20; i++) assert.deepEqual(m.observe('still', x), { allowed: true });
  // A query attack: one pixel changed by 0.2 per query (SimBA-like).
  const rand = mulberry32(3);
  let decision = m.observe('attacker', x);
  let queries = 1;
  while (decision.allowed && queries < 50) {
    const y = Float32Array.from(x);
    const px = Math.floor(rand() * 784);
    y[px] = 1 - y[px]!;
    decision = m.observe('attacker', y);
    queries++;
  }
  assert.ok(!decision.allowed && decision.reason === 'near-duplicates' && decision.record, JSON.stringify(decision));
  // A query that repeats an earlier one (the same pixel drawn twice) does not count.
  assert.ok(queries <= SETTINGS.nearDuplicates.neighbours + 4, String(queries));
  assert.ok(!decision.allowed && decision.neighbours >= SETTINGS.nearDuplicates.neighbours);
  // Blocked for blockMs at the door, whatever it sends; then admitted again.
  const door = m.admit('attacker');
  assert.ok(!door.allowed && door.reason === 'near-duplicates' && !door.record && door.retryAfterS === 30);
  assert.equal(m.blocked(), 1);
  c.advance(30_001);
  assert.deepEqual(m.admit('attacker'), { allowed: true });
  // Retrying one query after every block does not flush the near-duplicates out of the history.
  const retry = Float32Array.from(x);
  retry[400] = 0.5;
  for (let i = 0; i < 3 * SETTINGS.nearDuplicates.history; i++) {
    c.advance(30_001);
    assert.equal(m.admit('attacker').allowed, true);
    assert.equal(m.observe('attacker', retry).allowed, false, `retry ${i}`);
  }
});

test('at most maxClients are remembered, the least recently seen forgotten first', () => {
  const c = clock();
  const m = new ProbingMonitor(SETTINGS, c.now);
  for (let i = 0; i < 5; i++) m.admit('a');
  assert.equal(m.admit('a').allowed, false);
  m.admit('b');
  m.admit('c');
  m.admit('d'); // 'a' is forgotten: its bucket starts full again
  assert.equal(m.size, 3);
  assert.deepEqual(m.admit('a'), { allowed: true });
});

test('near-duplicate detection can be turned off', () => {
  const m = new ProbingMonitor({ ...SETTINGS, nearDuplicates: { ...SETTINGS.nearDuplicates, enabled: false } });
  const x = new Float32Array(784);
  for (let i = 0; i < 30; i++) {
    x[i] = 0.5;
    assert.deepEqual(m.observe('a', x), { allowed: true });
  }
});

test('property: a sketch has SKETCH_SIZE finite values within the input range, for any input', () => {
  fc.assert(
    fc.property(fc.array(fc.double(), { maxLength: 3000 }), (values) => {
      const s = sketch(values);
      assert.equal(s.length, SKETCH_SIZE);
      const finite = values.filter(Number.isFinite);
      const lo = Math.min(0, ...finite);
      const hi = Math.max(0, ...finite);
      for (const v of s)
        assert.ok(Number.isFinite(v) && v >= lo - 1e-9 * Math.abs(lo) && v <= hi + 1e-9 * Math.abs(hi));
    }),
  );
  assert.deepEqual(Array.from(sketch(BigInt64Array.from([1n, 2n]))).slice(0, 2), [1, 1]);
});
