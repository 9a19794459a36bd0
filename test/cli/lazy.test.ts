/**
 * The shipped CLI (dist/, built before the tests) answers help from its light table and loads a
 * command's implementation only when that command runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { buildProgram } from '../../src/cli/main.ts';
import { answerFromManifest, buildManifest, readManifest, type CliManifest } from '../../src/cli/manifest.ts';
import { COMMAND_MODULES } from '../../src/cli/commands/index.ts';
import { CLI, REPO_ROOT } from '../helpers/workspace.ts';

const run = promisify(execFile);

/** Logs every module the process resolves, as `LOAD url` lines on stderr (a module hook). */
const TRACE_HOOK = `data:text/javascript,${encodeURIComponent(
  `import { register } from 'node:module';
   register('data:text/javascript,' + encodeURIComponent(
     'export async function resolve(s, c, next) { const r = await next(s, c); console.error("LOAD " + r.url); return r; }'));`,
)}`;

async function loadedBy(args: string[]): Promise<{ stdout: string; modules: string[] }> {
  const r = await run(process.execPath, ['--import', TRACE_HOOK, CLI, ...args], { cwd: REPO_ROOT });
  const modules = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('LOAD '))
    .map((l) => l.slice(5));
  return { stdout: r.stdout, modules };
}

let live: CliManifest | undefined;
const liveManifest = async () => (live ??= await buildManifest(COMMAND_MODULES, buildProgram));

test('the built table has every command of the live program, with the same help', async () => {
  const built = readManifest();
  assert.ok(built === undefined, 'sources carry no manifest: the table is written to dist/ only');
  const { stdout } = await run(process.execPath, [CLI, 'model', 'verify', '--help']);
  const expected = await liveManifest();
  assert.equal(stdout, expected.commands['model verify']!.help);
  // Every command path of the live program answers from the table with its own help.
  for (const [path, { help }] of Object.entries(expected.commands)) {
    const a = answerFromManifest(expected, [...(path ? path.split(' ') : []), '--help']);
    assert.deepEqual(a, { stdout: help, code: 0 }, path);
  }
});

test('--help of any command, and --version, load no command module and no domain library', async () => {
  const manifest = await liveManifest();
  const paths = Object.keys(manifest.commands);
  // The root, every group and a sample of leaves (each one is a process start).
  const sample = paths.filter((p, i) => !p.includes(' ') || i % 5 === 0);
  for (const path of sample) {
    const { modules } = await loadedBy([...(path ? path.split(' ') : []), '--help']);
    const ours = modules.filter((u) => u.includes('/dist/')).map((u) => u.slice(u.indexOf('/dist/') + 6));
    assert.deepEqual(
      // The CLI's own start-up files and the errors module (codes, messages) only.
      ours.filter(
        (m) =>
          !['cli/main.js', 'cli/manifest.js', 'cli/output.js', 'cli/commands/index.js'].includes(m) &&
          !m.startsWith('errors/'),
      ),
      [],
      `${path || '(root)'} --help loaded command or domain modules`,
    );
    const heavy = modules.filter((u) =>
      /node_modules\/(onnxruntime|sharp|fastify|kysely|pg|better-sqlite3|zod)/.test(u),
    );
    assert.deepEqual(heavy, [], `${path || '(root)'} --help loaded heavy libraries`);
  }
  const v = await loadedBy(['--version']);
  assert.equal(v.stdout, '0.1.0\n');
});

test('a command loads the modules of its group only', async () => {
  const { modules } = await loadedBy(['key', 'new', '--help']);
  assert.ok(!modules.some((u) => u.includes('/dist/cli/commands/key.js')), 'help does not load key.js');
  const r = await loadedBy(['model', 'inspect', '--json', 'no-such-file.egm']).catch(
    (e: { stdout: string; stderr: string }) => ({
      stdout: e.stdout,
      modules: e.stderr
        .split('\n')
        .filter((l) => l.startsWith('LOAD '))
        .map((l) => l.slice(5)),
    }),
  );
  assert.match(r.stdout, /EG_NOT_FOUND|EG_IO/);
  const commandModules = r.modules.filter((u) => u.includes('/dist/cli/commands/')).map((u) => u.split('/').pop());
  assert.deepEqual([...new Set(commandModules)].sort(), ['index.js', 'model.js']);
  assert.ok(
    !r.modules.some((u) => /node_modules\/(onnxruntime-node|fastify|kysely)\//.test(u)),
    'inspect loads no ORT, fastify, kysely',
  );
});

test('usage errors: a bare group prints its help on stderr and exits 2; an unknown command is named', async () => {
  const bare = await run(process.execPath, [CLI, 'model']).catch((e: { code: number; stderr: string }) => e);
  assert.equal((bare as { code: number }).code, 2);
  assert.match((bare as { stderr: string }).stderr, /^Usage: edgeguard model/);
  const unknown = await run(process.execPath, [CLI, 'model', 'bogus']).catch(
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal((unknown as { code: number }).code, 2);
  assert.match((unknown as { stderr: string }).stderr, /EG_USAGE: unknown command 'bogus'/);
});
