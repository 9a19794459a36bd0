/**
 * The layering rule of eslint.config.js, run through ESLint's Node API on small in-memory sources
 * placed in each layer: a cross-app import is an error with the layer's message, the public faces
 * and the shared layers (fleet/, runtime/) are allowed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ESLint } from 'eslint';
import { REPO_ROOT } from '../helpers/workspace.ts';

const eslint = new ESLint({ cwd: REPO_ROOT });

async function restrictedImports(file: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(source, { filePath: join(REPO_ROOT, file) });
  return result!.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

const use = (specifier: string) => `import * as m from '${specifier}';\nexport const x = m;\n`;

test('cli/ reaches server/ and agent/ only through their index.ts', async () => {
  const file = 'src/cli/commands/example.ts';
  for (const internal of ['../../server/routes/audit.ts', '../../server/app.ts', '../../agent/serve.ts']) {
    const errors = await restrictedImports(file, use(internal));
    assert.equal(errors.length, 1, internal);
    assert.match(errors[0]!, /cli\/ may use server\/ and agent\/ only through server\/index\.ts and agent\/index\.ts/);
  }
  for (const face of [
    '../../server/index.ts',
    '../../agent/index.ts',
    '../../fleet/index.ts',
    '../../runtime/index.ts',
  ])
    assert.deepEqual(await restrictedImports(file, use(face)), [], face);
});

test('server/ and agent/ never import each other, not even the index', async () => {
  const fromServer = await restrictedImports('src/server/routes/example.ts', use('../../agent/index.ts'));
  assert.equal(fromServer.length, 1);
  assert.match(fromServer[0]!, /server\/ must not import cli\/ or agent\//);
  const fromAgent = await restrictedImports('src/agent/example.ts', use('../server/index.ts'));
  assert.equal(fromAgent.length, 1);
  assert.match(fromAgent[0]!, /agent\/ must not import cli\/ or server\//);
  assert.deepEqual(await restrictedImports('src/agent/example.ts', use('../fleet/index.ts')), []);
  assert.deepEqual(await restrictedImports('src/server/example.ts', use('../fleet/index.ts')), []);
});

test('domain modules, fleet/ and runtime/ included, never import an app', async () => {
  for (const file of ['src/fleet/example.ts', 'src/runtime/example.ts', 'src/audit/example.ts']) {
    const errors = await restrictedImports(file, use('../agent/index.ts'));
    assert.equal(errors.length, 1, file);
    assert.match(errors[0]!, /Domain modules must not import cli\/, server\/ or agent\//);
    assert.deepEqual(await restrictedImports(file, use('../errors/index.ts')), [], file);
  }
});
