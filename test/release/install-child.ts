/**
 * The installing process of the crash test (install-crash.test.ts): one device update, as
 * `edgeguard agent update` runs it, with the step hook the harness sets in the environment.
 * Prints "ready" once loaded, then the step names, then the outcome.
 */
import { writeSync } from 'node:fs';
import { join } from 'node:path';
import { createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { openDeviceKeyStore } from '../../src/keystore/index.ts';
import { SoftwareFloor, updateDevice } from '../../src/release/index.ts';

interface ChildArgs {
  dataDir: string;
  deviceDir: string;
  wrappedKeyPath: string;
  publicKeyPath: string;
  url: string;
  target: string;
}

const a = JSON.parse(process.argv[2]!) as ChildArgs;
const store = await openDeviceKeyStore(a.deviceDir);
const publicKey = createPublicKey(await readFile(a.publicKeyPath));
writeSync(1, 'ready\n');
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
