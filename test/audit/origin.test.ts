import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { logOriginFor } from '../../src/audit/index.ts';
import { controlPlanePlugins } from '../../src/server/index.ts';
import { startTestFleet } from '../server/fleet-helpers.ts';

async function checkpointOrigin(o: { origin?: string; defaultOrigin?: string }, dataDir: string): Promise<string> {
  const plugins = controlPlanePlugins({ dataDir, checkpointIntervalMs: 0, ...o });
  const fleet = await startTestFleet({ dataDir, plugins: plugins.all });
  try {
    const r = await fleet.client().send<string>('GET', '/v1/audit/checkpoint');
    assert.equal(r.status, 200);
    return String(r.body).split('\n')[0]!;
  } finally {
    await fleet.stop();
  }
}

describe('the log origin (C2SP: a schema-less URL naming one log)', () => {
  it('is derived from the server URL', () => {
    assert.equal(logOriginFor('https://cp.example.com:8443'), 'cp.example.com:8443/audit');
    assert.equal(logOriginFor('https://cp.example.com'), 'cp.example.com/audit');
    assert.equal(logOriginFor('https://[::1]:8443'), '[::1]:8443/audit');
  });

  it('is configurable, defaults to the derived one on a new log, and stays what an existing log signed', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'eg-origin-'));
    const second = mkdtempSync(join(tmpdir(), 'eg-origin-'));
    try {
      assert.equal(await checkpointOrigin({ origin: 'fleet-a.example/audit' }, dataDir), 'fleet-a.example/audit');
      // Restarted with only a default: the log keeps the origin its checkpoints carry.
      assert.equal(await checkpointOrigin({ defaultOrigin: 'other.example/audit' }, dataDir), 'fleet-a.example/audit');
      assert.equal(
        await checkpointOrigin({ defaultOrigin: 'cp.example.com:8443/audit' }, second),
        'cp.example.com:8443/audit',
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(second, { recursive: true, force: true });
    }
  });
});
