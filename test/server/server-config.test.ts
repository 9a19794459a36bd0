import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { openServerStore, recordAdminCertificate, startServer, SERVER_CONFIG_FILE } from '../../src/server/index.ts';
import { auditServerPlugin } from '../../src/server/routes/audit.ts';
import { decodeLogLeaf } from '../../src/audit/index.ts';
import { generateP256, spkiOf } from '../../src/pki/index.ts';
import { createTempDatabase } from '../helpers/postgres.ts';
import { startTestFleet, TEST_PASSPHRASE } from './fleet-helpers.ts';

const start = (dataDir: string, dbUrl?: string) =>
  startServer({ dataDir, listen: '127.0.0.1:0', caPassphrase: TEST_PASSPHRASE, dbUrl, logger: false });

describe("admin commands find the server's own store through DATA/server.json", () => {
  it('a PostgreSQL deployment: no SQLite file appears next to it, credentials are not written', async () => {
    const db = await createTempDatabase('eg_srvcfg');
    const dataDir = mkdtempSync(join(tmpdir(), 'eg-srvcfg-'));
    try {
      const withPassword = new URL(db.url);
      withPassword.password = 'not-on-disk';
      await (await start(dataDir, withPassword.toString())).close();
      const config = readFileSync(join(dataDir, SERVER_CONFIG_FILE), 'utf8');
      assert.doesNotMatch(config, /not-on-disk/);
      const store = await openServerStore({ dataDir });
      try {
        assert.equal(store.dialect, 'postgres');
      } finally {
        await store.close();
      }
      assert.equal(existsSync(join(dataDir, 'edgeguard.db')), false);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      await db.drop();
    }
  });

  it('a data directory no server ever ran in: refused, nothing created', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'eg-srvcfg-'));
    try {
      await assert.rejects(openServerStore({ dataDir }), (e: unknown) => {
        assert.ok(isEdgeguardError(e, 'EG_CONFIG'), String(e));
        assert.match((e as Error).message, /--db/);
        return true;
      });
      assert.equal(existsSync(join(dataDir, 'edgeguard.db')), false);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('a SQLite deployment: the same database the server uses', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'eg-srvcfg-'));
    try {
      await (await start(dataDir)).close();
      const store = await openServerStore({ dataDir });
      assert.equal(store.dialect, 'sqlite');
      await store.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('admin certificates issued from the data directory', () => {
  it('are recorded in the server store and logged as cert.issued', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'eg-admincert-'));
    const audit = auditServerPlugin({ dataDir, checkpointIntervalMs: 0 });
    const fleet = await startTestFleet({ dataDir, plugins: [audit] });
    try {
      const keys = await generateP256();
      const issued = await fleet.ca.issueAdminCertificate({ name: 'carol', publicKey: await spkiOf(keys.publicKey) });
      await recordAdminCertificate({ dataDir }, issued, 'operator-1');
      assert.equal(await fleet.server.ctx.store.certificateStatus(issued.serial), 'good');
      const log = audit.log!;
      const events = (await log.getEntries(0, await log.size())).map((l) => decodeLogLeaf(Buffer.from(l)).event);
      const logged = events.find((e) => e.type === 'cert.issued' && e.details.serial === issued.serial);
      assert.ok(logged?.type === 'cert.issued');
      assert.equal(logged.details.role, 'admin');
      assert.deepEqual(logged.actor, { kind: 'operator', id: 'operator-1' });
    } finally {
      await fleet.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
