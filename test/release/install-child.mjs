/**
 * The installing process of the crash and lock tests (install-crash.test.ts, install-lock.test.ts):
 * one device update, as `edgeguard agent update` runs it, with the step hook the harness sets in
 * the environment. It runs the compiled code in dist/ (`npm run build`, which `npm test` runs
 * first): without a TypeScript loader a child starts in about a third of the time.
 * Prints "ready" once loaded (with `waitForGo`, then waits for a line on stdin), then the step
 * names, then the outcome.
 */
import { writeSync } from 'node:fs';
import process from 'node:process';
import { join } from 'node:path';
import { createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { openDeviceKeyStore } from '../../dist/keystore/index.js';
import { SoftwareFloor, updateDevice } from '../../dist/release/index.js';

/** @type {{ dataDir: string, deviceDir: string, wrappedKeyPath: string, publicKeyPath: string, url: string, target: string, waitForGo?: boolean }} */
const a = JSON.parse(process.argv[2]);
const store = await openDeviceKeyStore(a.deviceDir);
const publicKey = createPublicKey(await readFile(a.publicKeyPath));
writeSync(1, 'ready\n');
if (a.waitForGo) {
  await new Promise((resolve) => process.stdin.once('data', resolve));
  process.stdin.destroy();
}
const outcome = await updateDevice({
  install: {
    dataDir: a.dataDir,
    publicKeys: [publicKey],
    contentKey: { wrapped: a.wrappedKeyPath, device: a.deviceDir, store },
    floor: new SoftwareFloor(a.dataDir),
  },
  metadataDir: join(a.dataDir, 'tuf'),
  metadataBaseUrl: `${a.url}/metadata`,
  targetBaseUrl: `${a.url}/targets`,
  downloadDir: join(a.dataDir, 'download'),
  target: a.target,
});
writeSync(1, `outcome ${JSON.stringify(outcome)}\n`);
