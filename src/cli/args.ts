/** Parsing helpers for CLI option values, each failing with EG_USAGE and a hint. */
import { InvalidArgumentError } from 'commander';

export function parseByteSize(value: string): number {
  const m = /^(\d+)\s*([kmg]i?b?|b)?$/i.exec(value.trim());
  if (!m) throw new InvalidArgumentError('expected a size such as 65536, 64k or 1M.');
  const unit = (m[2] ?? '').toLowerCase()[0];
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
  return Number(m[1]) * mult;
}

export function parseNonNegativeInt(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number (0, 1, 2, ...).');
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('the number is too large.');
  return n;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
