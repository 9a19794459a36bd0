#!/usr/bin/env node
// Builds the native shard opener (native/shard_open.c, binding.gyp) with node-gyp. It is an
// accelerator, not a requirement: when it cannot be built (no compiler, no Node headers) the
// package decrypts with its JavaScript path and says so here. Run by `npm install` / `npm ci`
// (the package's install script) and by `npm run build:native`; set EDGEGUARD_NATIVE_REQUIRED=1 to
// make a failed build an error (CI does).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';

const required = process.env.EDGEGUARD_NATIVE_REQUIRED === '1';
// npm tells its scripts where its own node-gyp is; otherwise, the one beside this node's npm.
const candidates = [
  process.env.npm_config_node_gyp,
  join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
];
const gyp = candidates.find((p) => p && existsSync(p));
// Build against this node's own headers when it has them (they include its OpenSSL's): node-gyp
// would otherwise try to download them, and these machines may have no network.
const prefix = join(dirname(process.execPath), '..');
const args = [
  'rebuild',
  ...(!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))
    ? [`--nodedir=${prefix}`]
    : []),
];
const r = gyp
  ? spawnSync(process.execPath, [gyp, ...args], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' })
  : spawnSync('node-gyp', args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (r.status === 0 && existsSync(join('build', 'Release', 'edgeguard_native.node'))) {
  process.stdout.write('edgeguard: built the native shard opener (build/Release/edgeguard_native.node)\n');
  process.exit(0);
}
const why = r.error ? r.error.message : (r.stderr || r.stdout || '').trim().split('\n').slice(-5).join('\n');
process.stderr.write(
  `edgeguard: the native shard opener was not built; model verify and decrypt will use the slower JavaScript path.\n${why}\n` +
    'To build it: install a C compiler, make and python3 (node-gyp needs them), then run `npm run build:native`.\n',
);
process.exit(required ? 1 : 0);
