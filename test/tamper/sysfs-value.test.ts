/**
 * The sysfs value parsers: the forms the kernel prints are accepted, everything else (garbage,
 * empty, huge, signs where none belong, embedded NULs) is EG_TAMPER_SENSOR; fast-check properties
 * over arbitrary strings and over the valid forms.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { parseSysfsDecimal, parseSysfsFlag, parseSysfsInteger } from '../../src/tamper/index.ts';
import { readSysfsAttribute } from '../../src/tamper/sysfs-value.ts';

const refused = (e: unknown) => isEdgeguardError(e, 'EG_TAMPER_SENSOR');

describe('sysfs value parsers', () => {
  test('integers: the kernel forms, negative included', () => {
    assert.equal(parseSysfsInteger('0\n', 'x'), 0);
    assert.equal(parseSysfsInteger('-512\n', 'x'), -512);
    assert.equal(parseSysfsInteger('1024', 'x'), 1024);
    assert.equal(parseSysfsInteger('9007199254740991\n', 'x'), Number.MAX_SAFE_INTEGER);
  });

  test('integers: garbage, empty, huge, stray signs and spaces are refused', () => {
    const bad = [
      '',
      '\n',
      'abc\n',
      '12abc',
      ' 12',
      '12 \n',
      '12\n\n',
      '+12',
      '--1',
      '-',
      '1.5',
      '0x10',
      '1e3',
      '12\0',
      '99999999999999999',
      '9'.repeat(4096),
      '１２',
    ];
    for (const text of bad) assert.throws(() => parseSysfsInteger(text, 'x'), refused, JSON.stringify(text));
  });

  test('decimals: the IIO scale forms; garbage and huge refused', () => {
    assert.equal(parseSysfsDecimal('0.009576806\n', 's'), 0.009576806);
    assert.equal(parseSysfsDecimal('1\n', 's'), 1);
    assert.equal(parseSysfsDecimal('-0.5', 's'), -0.5);
    const bad = ['', '\n', '.5', '1.', '1..2', 'nan', 'Infinity', '1e-3', '0,5', ' 0.5', '0.5\r\n', '1'.repeat(65)];
    for (const text of bad) assert.throws(() => parseSysfsDecimal(text, 's'), refused, JSON.stringify(text));
  });

  test('flags: 0 and 1 only', () => {
    assert.equal(parseSysfsFlag('1\n', 'a'), true);
    assert.equal(parseSysfsFlag('0', 'a'), false);
    for (const text of ['', '\n', '2\n', '-1\n', '01\n', 'yes', '1 \n', 'true', '1'.repeat(100)])
      assert.throws(() => parseSysfsFlag(text, 'a'), refused, JSON.stringify(text));
  });

  test('property: any string either parses to a value the text spells, or is EG_TAMPER_SENSOR', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80, unit: 'binary' }), (text) => {
        for (const parse of [parseSysfsInteger, parseSysfsDecimal, parseSysfsFlag]) {
          try {
            const v = parse(text, 'prop');
            const body = text.replace(/\n$/, '');
            assert.ok(/^-?[0-9.]+$/.test(body), `accepted ${JSON.stringify(text)}`);
            if (typeof v === 'number') assert.ok(Number.isFinite(v));
          } catch (e) {
            assert.ok(refused(e), String(e));
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  test('property: every safe integer printed the kernel way round-trips', () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), fc.boolean(), (n, newline) => {
        assert.equal(parseSysfsInteger(`${n}${newline ? '\n' : ''}`, 'prop'), n);
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 999_999 }), fc.integer({ min: 0, max: 999_999_999 }), (i, f) => {
        const text = `${i}.${String(f).padStart(9, '0')}\n`;
        assert.equal(parseSysfsDecimal(text, 'prop'), Number(text));
      }),
    );
  });

  test('a huge attribute file is refused after reading a few bytes; a missing one names its path', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'eg-sysfs-value-'));
    try {
      const big = join(dir, 'in_accel_x_raw');
      await writeFile(big, '1'.repeat(1 << 20));
      const text = await readSysfsAttribute(big, 'x axis');
      assert.ok(text.length <= 65);
      assert.throws(() => parseSysfsInteger(text, 'x axis'), refused);
      await assert.rejects(
        readSysfsAttribute(join(dir, 'missing'), 'y axis'),
        (e: unknown) => refused(e) && /missing.*ENOENT/.test((e as Error).message),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
