import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { openServerStore, startServer, SERVER_CONFIG_FILE } from '../../src/server/index.ts';
import { createTempDatabase } from '../helpers/postgres.ts';
import { TEST_PASSPHRASE } from './fleet-helpers.ts';

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
