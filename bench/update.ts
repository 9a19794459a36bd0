/**
 * Update time of one release on a device, against a plain download and verify of the same package,
 * both over the same mutual-TLS connection to a control plane serving the repository (/v1/tuf/):
 *
 *   update: TUF refresh from the provisioned root (timestamp, snapshot, targets; DurableUpdater),
 *     download within the signed lengths and hashes, OMS signature and header checked against the
 *     target's custom metadata, then the install: model -> stage into the inactive slot (copy,
 *     fsync, manifest), trial load (decrypt in memory, ONNX Runtime session, smoke test), pointer
 *     switch, floor raise; opaque package (kind firmware) -> decrypt in memory and hand to an
 *     installer command (`true`: the installer's own work is not counted).
 *   plain: HTTPS GET of the .egm and its .sig.json, then `model verify` with the content key
 *     (signature, header, every chunk authenticated and decrypted).
 *
 * Each run is a fresh device (trusted metadata from root v1, empty slots, software floor), so no
 * run finds the release already installed. The content key is a key file: a TPM unwrap adds what
 * bench/tpm-unwrap.ts measures; the director adds one GET of its metadata and an Ed25519 check.
 *
 *   node --import tsx bench/update.ts [--runs 5] [--opaque-mib 64]
 */
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, get } from 'node:https';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { verifyPackage } from '../src/model/index.ts';
import {
  DurableUpdater,
  MtlsFetcher,
  SoftwareFloor,
  addRelease,
  initRepository,
  installRelease,
  provisionTrustedRoot,
  publishRepository,
  releasePaths,
  type ReleaseKind,
  verifiedReleaseOf,
} from '../src/release/index.ts';
import { downloadVerified, targetInfo, tuf } from '../src/release/client.ts';
import { controlPlanePlugins } from '../src/server/index.ts';
import { packBytes, packDemoModel } from '../test/helpers/packages.ts';
import { writeKeys, type KeyFiles } from '../test/helpers/workspace.ts';
import { startTestFleet } from '../test/server/fleet-helpers.ts';
import { machine } from './lib/machine.ts';

const args = process.argv.slice(2);
const opt = (name: string, def: string) => (args.includes(name) ? (args[args.indexOf(name) + 1] ?? def) : def);
const RUNS = Number(opt('--runs', '5'));
const OPAQUE_MIB = Number(opt('--opaque-mib', '64'));
const FIXTURES = join(import.meta.dirname, '..', 'fixtures');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface Bench {
  work: string;
  base: string;
  fetcher: MtlsFetcher;
  /** The plain client: the same mutual TLS, a keep-alive agent, the response streamed to a file. */
  agent: Agent;
  keys: KeyFiles;
  rootJson: Buffer;
}

interface Case {
  label: string;
  kind: ReleaseKind;
  /** The package's target path in the repository and where its bytes are served. */
  target: string;
  bytes: number;
}

/** One update on a fresh device; the phases in milliseconds. */
async function update(b: Bench, c: Case, run: number) {
  const dev = join(b.work, `device-${c.kind}-${run}`);
  const metadataDir = join(dev, 'tuf');
  await provisionTrustedRoot(metadataDir, b.rootJson);
  const t0 = performance.now();
  const updater = new DurableUpdater({
    metadataDir,
    metadataBaseUrl: `${b.base}/v1/tuf/metadata`,
    targetBaseUrl: `${b.base}/v1/tuf/targets`,
    targetDir: join(dev, 'download'),
    fetcher: b.fetcher,
  });
  await tuf(() => updater.refresh());
  const t1 = performance.now();
  const fetched = await downloadVerified(updater, await targetInfo(updater, c.target), {
    downloadDir: join(dev, 'download'),
    publisherKeys: [b.keys.signer.publicKey],
    minimumVersion: 0,
  });
  const t2 = performance.now();
  const outcome = await installRelease(await verifiedReleaseOf(fetched), {
    dataDir: join(dev, 'agent'),
    publicKeys: [b.keys.signer.publicKey],
    contentKey: { file: b.keys.contentKeyPath },
    floor: new SoftwareFloor(join(dev, 'agent')),
    installers: { firmware: ['true', '{path}'] },
  });
  const t3 = performance.now();
  if (!outcome.ok) throw new Error(`install failed: ${outcome.error?.code} ${outcome.error?.message}`);
  await rm(dev, { recursive: true, force: true });
  return { refresh: t1 - t0, downloadVerify: t2 - t1, install: t3 - t2, total: t3 - t0 };
}

function httpsGet(b: Bench, path: string, dest: string): Promise<void> {
  return new Promise((resolve, reject) => {
    get(`${b.base}${path}`, { agent: b.agent }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`GET ${path}: HTTP ${res.statusCode}`));
        return;
      }
      pipeline(res, createWriteStream(dest)).then(resolve, reject);
    }).on('error', reject);
  });
}

/** HTTPS GET of the package and its signature, then `model verify` with the content key. */
async function plain(b: Bench, c: Case, run: number) {
  const dir = join(b.work, `plain-${c.kind}-${run}`);
  await mkdir(dir, { recursive: true });
  const info = JSON.parse(await readFile(join(b.work, `${c.kind}.target.json`), 'utf8')) as {
    pkg: string;
    sig: string;
  };
  const path = join(dir, 'pkg.egm');
  const t0 = performance.now();
  await httpsGet(b, `/v1/tuf/targets/${info.pkg}`, path);
  await httpsGet(b, `/v1/tuf/targets/${info.sig}`, `${path}.sig.json`);
  const t1 = performance.now();
  const v = await verifyPackage(path, { publicKeys: [b.keys.signer.publicKey], contentKey: b.keys.contentKey });
  const t2 = performance.now();
  if (!v.chunksAuthenticated) throw new Error('plain verify did not authenticate the chunks');
  await rm(dir, { recursive: true, force: true });
  return { download: t1 - t0, verify: t2 - t1, total: t2 - t0 };
}

/** Add a package to the repository; remember the served names (consistent snapshots: DIR/SHA256.NAME) for the plain GET. */
async function publish(b: { work: string; repo: string }, c: Omit<Case, 'target'>, packagePath: string) {
  const smoke = c.kind === 'model' ? { inputPath: join(FIXTURES, 'digits', '3-0.png'), expectedLabel: '3' } : undefined;
  const t = await addRelease({
    dir: b.repo,
    packagePath,
    version: 1,
    kind: c.kind,
    ...(smoke ? { smokeTest: smoke } : {}),
  });
  const custom = (t.custom as { edgeguard: { signature: { target: string; sha256: string } } }).edgeguard;
  const served = (path: string, sha: string) => path.replace(/[^/]+$/, (n) => `${sha}.${n}`);
  await writeFile(
    join(b.work, `${c.kind}.target.json`),
    JSON.stringify({
      pkg: served(t.path, t.hashes.sha256!),
      sig: served(custom.signature.target, custom.signature.sha256),
    }),
  );
  return t.path;
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'eg-bench-update-'));
  const dataDir = join(work, 'control-plane');
  const repo = join(dataDir, 'releases');
  const fleet = await startTestFleet({ dataDir, plugins: controlPlanePlugins({ dataDir }).all });
  try {
    const keys = await writeKeys(work);
    await initRepository({ dir: repo });
    const modelPkg = await packDemoModel(work, keys, 'mnist-mlp');
    const opaque = await packBytes(work, randomBytes(OPAQUE_MIB << 20), keys, { name: 'firmware', version: 1 });
    const sizes = { model: (await readFile(modelPkg)).length, firmware: opaque.packageBytes };
    const cases: Case[] = [
      { label: 'demo model (mnist-mlp)', kind: 'model', bytes: sizes.model, target: '' },
      { label: `opaque ${OPAQUE_MIB} MiB (kind firmware)`, kind: 'firmware', bytes: sizes.firmware, target: '' },
    ];
    cases[0]!.target = await publish({ work, repo }, cases[0]!, modelPkg);
    cases[1]!.target = await publish({ work, repo }, cases[1]!, opaque.packagePath);
    await publishRepository(repo);
    const cred = await fleet.deviceCredential();
    const fetcher = new MtlsFetcher({ ca: fleet.ca.rootPem, cert: cred.cert, key: cred.key });
    const agent = new Agent({ keepAlive: true, ca: fleet.ca.rootPem, cert: cred.cert, key: cred.key });
    const b: Bench = {
      work,
      base: fleet.server.url,
      fetcher,
      agent,
      keys,
      rootJson: await readFile(join(releasePaths(repo).metadata, '1.root.json')),
    };
    process.stdout.write(`machine: ${machine({ load: true })}\n`);
    process.stdout.write(`${new Date().toISOString()}, ${RUNS} runs after a warm-up, medians (ms):\n`);
    try {
      for (const c of cases) {
        await update(b, c, -1);
        await plain(b, c, -1);
        const u = [];
        const p = [];
        for (let i = 0; i < RUNS; i++) {
          u.push(await update(b, c, i));
          p.push(await plain(b, c, i));
        }
        const m = <T extends Record<string, number>>(xs: T[], k: keyof T) => median(xs.map((x) => x[k]!));
        const ut = m(u, 'total');
        const pt = m(p, 'total');
        process.stdout.write(
          `  ${c.label}, package ${(c.bytes / 2 ** 20).toFixed(2)} MiB\n` +
            `    update ${ut.toFixed(0)} ms = refresh ${m(u, 'refresh').toFixed(0)} + download and verify ${m(u, 'downloadVerify').toFixed(0)} + install ${m(u, 'install').toFixed(0)}\n` +
            `    plain  ${pt.toFixed(0)} ms = download ${m(p, 'download').toFixed(0)} + model verify ${m(p, 'verify').toFixed(0)}\n` +
            `    ratio update / plain: ${(ut / pt).toFixed(2)}x\n`,
        );
      }
    } finally {
      fetcher.close();
      agent.destroy();
    }
  } finally {
    await fleet.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
