/** The efivarfs parser for SecureBoot/SetupMode: exact bytes accepted, every other shape refused. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { EFI_GLOBAL_VARIABLE_GUID, parseEfiBooleanVariable, readSecureBootState } from '../../src/harden/index.ts';
import { tempDir } from '../helpers/workspace.ts';

/** BOOTSERVICE_ACCESS | RUNTIME_ACCESS, as firmware publishes SecureBoot and SetupMode. */
const BS_RT = 0x06;

function variable(value: number, attributes = BS_RT): Buffer {
  const bytes = Buffer.alloc(5);
  bytes.writeUInt32LE(attributes, 0);
  bytes[4] = value;
  return bytes;
}

async function efiRoot(t: Parameters<typeof tempDir>[0], vars: Record<string, Buffer>): Promise<string> {
  const root = await tempDir(t, 'eg-efi-');
  const efivars = join(root, 'sys', 'firmware', 'efi', 'efivars');
  await mkdir(efivars, { recursive: true });
  for (const [name, bytes] of Object.entries(vars))
    await writeFile(join(efivars, `${name}-${EFI_GLOBAL_VARIABLE_GUID}`), bytes);
  return root;
}

test('a firmware-shaped variable parses to its value and attributes', () => {
  assert.deepEqual(parseEfiBooleanVariable(variable(1), 'SecureBoot'), { attributes: BS_RT, value: true });
  assert.deepEqual(parseEfiBooleanVariable(variable(0), 'SetupMode'), { attributes: BS_RT, value: false });
});

test('bad input is refused with a typed error', () => {
  const cases: Array<[Buffer, string]> = [
    [Buffer.alloc(0), 'EG_TRUNCATED'],
    [Buffer.from([6, 0, 0, 0]), 'EG_TRUNCATED'],
    [Buffer.concat([variable(1), Buffer.from([0])]), 'EG_TRAILING_DATA'],
    [variable(2), 'EG_FORMAT'],
    [variable(0xff), 'EG_FORMAT'],
    [variable(1, 0x07), 'EG_FORMAT'], // non-volatile: not the firmware's variable
    [variable(1, 0x02), 'EG_FORMAT'], // no runtime access
    [variable(1, 0x04), 'EG_FORMAT'], // no boot-service access
  ];
  for (const [bytes, code] of cases)
    assert.throws(
      () => parseEfiBooleanVariable(bytes, 'SecureBoot'),
      (e) => isEdgeguardError(e, code as never),
      bytes.toString('hex'),
    );
});

test('property: any byte string is either exactly a valid variable or refused with a typed error', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 16 }), (bytes) => {
      let parsed;
      try {
        parsed = parseEfiBooleanVariable(bytes, 'SecureBoot');
      } catch (e) {
        assert.ok(isEdgeguardError(e), String(e));
        return;
      }
      assert.equal(bytes.length, 5);
      assert.ok(bytes[4]! <= 1);
      assert.equal(parsed.value, bytes[4] === 1);
      assert.equal(parsed.attributes & 0x07, 0x06);
    }),
    { numRuns: 2000 },
  );
});

test('property: every attribute word with BS and RT and without NV is accepted for 0 and 1', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 1 }), (attrs, value) => {
      const attributes = ((attrs | BS_RT) & ~1) >>> 0;
      assert.equal(parseEfiBooleanVariable(variable(value, attributes), 'SetupMode').value, value === 1);
    }),
  );
});

test('readSecureBootState: on, off, setup mode, missing variables, no UEFI, malformed', async (t) => {
  const on = await efiRoot(t, { SecureBoot: variable(1), SetupMode: variable(0) });
  assert.deepEqual(await readSecureBootState(on), { status: 'read', secureBoot: true, setupMode: false });
  const setup = await efiRoot(t, { SecureBoot: variable(0), SetupMode: variable(1) });
  assert.deepEqual(await readSecureBootState(setup), { status: 'read', secureBoot: false, setupMode: true });
  const unmounted = await efiRoot(t, {});
  assert.equal((await readSecureBootState(unmounted)).status, 'unreadable');
  const onlyOne = await efiRoot(t, { SecureBoot: variable(1) });
  const state = await readSecureBootState(onlyOne);
  assert.equal(state.status, 'unreadable');
  assert.match(state.status === 'unreadable' ? state.reason : '', /lacks SetupMode/);
  assert.deepEqual(await readSecureBootState(await tempDir(t)), { status: 'not-uefi' });
  const bad = await efiRoot(t, { SecureBoot: variable(3), SetupMode: variable(0) });
  await assert.rejects(readSecureBootState(bad), (e) => isEdgeguardError(e, 'EG_FORMAT'));
});
