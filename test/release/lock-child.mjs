/**
 * A process contending for a data directory's install lock (install-lock.test.ts), from the
 * compiled code in dist/. Prints "ready", waits for a line on stdin, tries the lock once (no wait),
 * prints "held" or "busy CODE MESSAGE"; a holder keeps the lock until stdin closes.
 */
import { writeSync } from 'node:fs';
import process from 'node:process';
import { acquireInstallLock } from '../../dist/release/index.js';

const dataDir = process.argv[2];
writeSync(1, 'ready\n');
await new Promise((resolve) => process.stdin.once('data', resolve));
try {
  const lock = await acquireInstallLock(dataDir);
  writeSync(1, 'held\n');
  process.stdin.on('end', () => lock.release());
  process.stdin.resume();
} catch (e) {
  writeSync(1, `busy ${e.code} ${e.message}\n`);
  process.stdin.destroy();
}
