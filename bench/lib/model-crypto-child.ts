/**
 * One measured operation of bench/model-crypto.ts, run in its own process so that its peak RSS is
 * its own. Keys arrive as one JSON line on stdin (never on disk or in argv). Prints one JSON line:
 *   { op, seconds, cpuSeconds, mainBusy, bytes, idleRssKiB, maxRssKiB, engine? }
 * idleRssKiB is the process's RSS right before the operation (modules loaded, keys parsed, after a
 * GC when --expose-gc is on); maxRssKiB is getrusage's high-water mark for the whole process
 * (all threads), read after it. cpuSeconds is the process's user+system CPU time over the operation
 * (all threads); mainBusy the main thread's event-loop utilisation over it (1 = never idle).
 *
 *   node --import tsx bench/lib/model-crypto-child.ts pack SUITE INPUT OUTPUT   < {"contentKey","signingKeyPem"}
 *   node --import tsx bench/lib/model-crypto-child.ts verify PACKAGE           < {"contentKey","publicKeyPem"}
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import {
  contentKeyFromBytes,
  parseCipherSuite,
  publicKeyId,
  signingAlgorithmOf,
  wipe,
} from '../../src/crypto/index.ts';
import { packModel, verifyPackage, type VerifyResult } from '../../src/model/index.ts';

interface ChildKeys {
  contentKey: string;
  signingKeyPem?: string;
  publicKeyPem?: string;
}

async function readStdin(): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of process.stdin) parts.push(c as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

function idleRssKiB(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return Math.round(process.memoryUsage.rss() / 1024);
}

async function main(): Promise<void> {
  const [op, ...rest] = process.argv.slice(2);
  const keys = JSON.parse(await readStdin()) as ChildKeys;
  const contentKey = contentKeyFromBytes(Buffer.from(keys.contentKey, 'base64'));
  let seconds: number;
  let bytes: number;
  let idle: number;
  let cpu0: NodeJS.CpuUsage;
  let elu0: EventLoopUtilization;
  let engine: VerifyResult['engine'];
  if (op === 'pack') {
    const [suite, input, output] = rest;
    if (!suite || !input || !output || !keys.signingKeyPem) throw new Error('usage: pack SUITE INPUT OUTPUT');
    const privateKey = createPrivateKey(keys.signingKeyPem);
    const publicKey = createPublicKey(privateKey);
    const signer = { algorithm: signingAlgorithmOf(privateKey), privateKey, publicKey, keyId: publicKeyId(publicKey) };
    idle = idleRssKiB();
    cpu0 = process.cpuUsage();
    elu0 = performance.eventLoopUtilization();
    const t = performance.now();
    const r = await packModel({
      inputPath: input,
      outputPath: output,
      contentKey,
      signer,
      suite: parseCipherSuite(suite),
      metadata: { name: 'bench', version: 1, format: 'opaque', inputs: [], outputs: [] },
      overwrite: true,
    });
    seconds = (performance.now() - t) / 1000;
    bytes = r.parsed.header.plaintextLength;
  } else if (op === 'verify') {
    const [pkg] = rest;
    if (!pkg || !keys.publicKeyPem) throw new Error('usage: verify PACKAGE');
    const publicKey = createPublicKey(keys.publicKeyPem);
    idle = idleRssKiB();
    cpu0 = process.cpuUsage();
    elu0 = performance.eventLoopUtilization();
    const t = performance.now();
    const r = await verifyPackage(pkg, { publicKeys: [publicKey], contentKey });
    seconds = (performance.now() - t) / 1000;
    if (!r.chunksAuthenticated) throw new Error('verifyPackage did not authenticate the chunks');
    engine = r.engine;
    bytes = r.header.plaintextLength;
  } else {
    throw new Error(`unknown operation ${op}`);
  }
  const cpu = process.cpuUsage(cpu0);
  const mainBusy = performance.eventLoopUtilization(elu0).utilization;
  wipe(contentKey.bytes);
  const maxRssKiB = process.resourceUsage().maxRSS;
  process.stdout.write(
    JSON.stringify({
      op,
      seconds,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      mainBusy,
      bytes,
      idleRssKiB: idle,
      maxRssKiB,
      engine,
    }) + '\n',
  );
}

await main();
