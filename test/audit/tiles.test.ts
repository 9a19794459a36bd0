import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { auditServerPlugin, parseTileIndex, tileIndexPath } from '../../src/server/routes/audit.ts';
import { startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';

describe('tlog-tiles paths: canonical only', () => {
  it('refuses non-canonical spellings of an index', () => {
    for (const bad of ['x000/001', 'x000/x000/000', 'x000/000.p/5', '0005', '1/000', 'x01/000', '000/', '/000'])
      assert.throws(() => parseTileIndex(bad), /tile path/, bad);
  });

  it('parses exactly what the canonical encoding produces (property)', () => {
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 40 }), fc.option(fc.integer({ min: 1, max: 255 })), (index, partial) => {
        const path = tileIndexPath(index, partial ?? undefined);
        assert.deepEqual(parseTileIndex(path), { index, width: partial ?? 256 });
      }),
    );
    fc.assert(
      fc.property(fc.stringMatching(/^(x\d{3}\/){0,3}\d{3}(\.p\/\d{1,3})?$/), (path) => {
        let parsed: { index: number; width: number } | undefined;
        try {
          parsed = parseTileIndex(path);
        } catch {
          return;
        }
        assert.equal(tileIndexPath(parsed.index, parsed.width === 256 ? undefined : parsed.width), path);
      }),
    );
  });
});

describe('tlog-tiles over HTTPS', () => {
  let fleet: TestFleet;
  const dataDir = mkdtempSync(join(tmpdir(), 'eg-tiles-'));
  const audit = auditServerPlugin({ dataDir, checkpointIntervalMs: 0 });
  before(async () => {
    fleet = await startTestFleet({ dataDir, plugins: [audit] });
    await audit.log!.appendMany(
      Array.from({ length: 260 }, (_, i) => ({
        type: 'admin.action' as const,
        time: new Date(Date.UTC(2026, 0, 1, 0, 0, 0, i)).toISOString(),
        actor: { kind: 'admin' as const, id: 'alice' },
        outcome: 'success' as const,
        details: { action: `a${i}` },
      })),
    );
    await audit.log!.publishCheckpoint();
  });
  after(async () => {
    await fleet.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('serves full tiles as immutable, partial tiles as changing', async () => {
    const full = await fleet.client().send<Buffer>('GET', '/v1/audit/tile/0/000');
    assert.equal(full.status, 200);
    assert.equal(full.headers['cache-control'], 'public, max-age=31536000, immutable');
    const partial = await fleet.client().send<Buffer>('GET', '/v1/audit/tile/0/001.p/4');
    assert.equal(partial.status, 200);
    assert.doesNotMatch(String(partial.headers['cache-control']), /immutable/);
    assert.equal((await fleet.client().send<Buffer>('GET', '/v1/audit/tile/1/000.p/1')).status, 200);
  });

  it('answers 404 for non-canonical paths and for levels above the top', async () => {
    for (const path of ['/v1/audit/tile/0/x000/000', '/v1/audit/tile/00/000', '/v1/audit/tile/2/000.p/1']) {
      const r = await fleet.client().send<{ error: { code: string } }>('GET', path);
      assert.equal(r.status, 404, path);
      assert.equal(r.body.error.code, 'EG_NOT_FOUND');
    }
    for (const level of [8, 9, 63, 64, 99]) {
      const r = await fleet.client().send<{ error: { code: string } }>('GET', `/v1/audit/tile/${level}/000.p/1`);
      assert.equal(r.status, 404, `level ${level}`);
      assert.equal(r.body.error.code, 'EG_NOT_FOUND');
    }
  });
});
