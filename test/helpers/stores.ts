/**
 * Run a test body against both store backends: SQLite in a temp directory and a fresh PostgreSQL
 * database. `forEachBackend` returns the backends so a test file can `describe` each one.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../src/store/index.ts';
import { createTempDatabase } from './postgres.ts';

export interface TestBackend {
  name: 'sqlite' | 'postgres';
  /** Open a fresh, empty, migrated store; `cleanup` closes it and deletes its data. */
  open(): Promise<{ store: Store; url: string | undefined; dataDir: string; cleanup(): Promise<void> }>;
}

export const BACKENDS: TestBackend[] = [
  {
    name: 'sqlite',
    async open() {
      const dataDir = mkdtempSync(join(tmpdir(), 'eg-store-'));
      const store = await Store.open({ dataDir });
      return {
        store,
        url: undefined,
        dataDir,
        async cleanup() {
          await store.close();
          rmSync(dataDir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 'postgres',
    async open() {
      const dataDir = mkdtempSync(join(tmpdir(), 'eg-store-'));
      const tmp = await createTempDatabase();
      const store = await Store.open({ url: tmp.url, dataDir });
      return {
        store,
        url: tmp.url,
        dataDir,
        async cleanup() {
          await store.close();
          await tmp.drop();
          rmSync(dataDir, { recursive: true, force: true });
        },
      };
    },
  },
];
