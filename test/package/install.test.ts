/**
 * The package as a user gets it: `npm pack` yields a tarball with the compiled CLI, the fixtures
 * and demo models, and no tests, benchmarks or development scripts; it installs into a clean
 * prefix and runs the demo subset from another directory. It runs when EDGEGUARD_TEST_PACKAGE=1
 * (.ci/run sets it).
 *
 * better-sqlite3 installs a prebuilt binary from its GitHub release, or compiles SQLite from source
 * (minutes on 2 cores) where that host is unreachable, as on CI. The test serves the binary that
 * `npm ci` built on this machine, for this Node ABI, from a local mirror through prebuild-install's
 * documented `npm_config_better_sqlite3_binary_host` setting: the install is the one a user with
 * the release host reachable gets. Nothing else about the install is changed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { REPO_ROOT, tempDir } from '../helpers/workspace.ts';

const run = promisify(execFile);
const ENABLED = process.env.EDGEGUARD_TEST_PACKAGE === '1';

test(
  'npm pack installs into a clean prefix and runs the demo subset from anywhere',
  { skip: ENABLED ? false : 'set EDGEGUARD_TEST_PACKAGE=1 (CI does): it installs every dependency', timeout: 900_000 },
  async (t) => {
    const dir = await tempDir(t, 'eg-package-');
    const packed = await run('npm', ['pack', '--json', '--pack-destination', dir], {
      cwd: REPO_ROOT,
      maxBuffer: 64 * 1024 * 1024,
    });
    // npm prints the prepare script's output (the build) before its JSON.
    const [info] = JSON.parse(packed.stdout.slice(packed.stdout.search(/^\[/m))) as Array<{
      filename: string;
      files: Array<{ path: string }>;
    }>;
    const files = info!.files.map((f) => f.path);
    for (const must of [
      'bin/edgeguard.js',
      'dist/cli/main.js',
      'dist/cli/commands.json',
      'dist/model/shard-worker.js',
      'native/shard_open.c',
      'scripts/build-native.mjs',
      'fixtures/models/mnist-cnn.onnx',
      'fixtures/digits/7-0.png',
      'ui/app.js',
      'ui/verify.js',
      'LICENSE',
    ])
      assert.ok(files.includes(must), `the tarball lacks ${must}`);
    const leaked = files.filter(
      (f) => /^(test|bench|src|types)\//.test(f) || (f.startsWith('scripts/') && f !== 'scripts/build-native.mjs'),
    );
    assert.deepEqual(leaked, [], 'tests, benchmarks, sources and development scripts stay out of the package');

    const mirror = await binaryMirror(dir);
    t.after(() => mirror.close());
    const prefix = join(dir, 'prefix');
    // ONNX Runtime's install script fetches GPU binaries unless told not to (the project's .npmrc says so for development).
    await run(
      'npm',
      ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--prefer-offline', join(dir, info!.filename)],
      {
        cwd: dir,
        env: {
          ...process.env,
          npm_config_onnxruntime_node_install: 'skip',
          npm_config_better_sqlite3_binary_host: mirror.url,
        },
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    t.diagnostic(`better-sqlite3 binary served from the local mirror: ${mirror.served() ? 'yes' : 'no (compiled)'}`);
    const elsewhere = join(dir, 'elsewhere');
    await run('mkdir', [elsewhere]);
    const demo = await run(join(prefix, 'bin', 'edgeguard'), ['--json', 'demo', '--only', 'keys,pack,run'], {
      cwd: elsewhere,
      env: { ...process.env, PATH: `${join(prefix, 'bin')}:${process.env.PATH}` },
      maxBuffer: 16 * 1024 * 1024,
    });
    const report = JSON.parse(demo.stdout) as { ok: boolean; steps: Array<{ id: string; ok: boolean }> };
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.steps.map((s) => [s.id, s.ok]),
      [
        ['keys', true],
        ['pack', true],
        ['run', true],
      ],
    );
    assert.deepEqual(await readdir(elsewhere), [], 'the demo wrote nothing into the directory it ran from');
  },
);

/**
 * A release host for better-sqlite3's prebuilt binary, in the layout prebuild-install asks for
 * (HOST/v{version}/better-sqlite3-v{version}-node-v{abi}-{platform}-{arch}.tar.gz, holding
 * build/Release/better_sqlite3.node), serving the binary of the project's own node_modules.
 */
async function binaryMirror(dir: string): Promise<{ url: string; served: () => boolean; close: () => void }> {
  const pkgDir = join(REPO_ROOT, 'node_modules', 'better-sqlite3');
  const { version } = JSON.parse(await readFile(join(pkgDir, 'package.json'), 'utf8')) as { version: string };
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  const tarball = join(dir, name);
  await run('tar', ['-czf', tarball, '-C', pkgDir, 'build/Release/better_sqlite3.node']);
  const bytes = await readFile(tarball);
  let hits = 0;
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === `/v${version}/${name}`) {
      hits++;
      res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': bytes.length }).end(bytes);
    } else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, served: () => hits > 0, close: () => server.close() };
}
