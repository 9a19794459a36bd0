/**
 * Bounds-checked big-endian reader for TPM 2.0 marshaled structures (TCG TPM 2.0 Library Part 2,
 * section 4 "Base Types" and section 10.4 for sized buffers). Every read checks the remaining
 * length first and every parse ends with `end()`, so truncated input and trailing bytes both fail
 * with EG_TPM_STRUCTURE instead of a RangeError or a silently accepted suffix.
 */
import { EdgeguardError } from '../errors/index.ts';

export function structureError(what: string, detail: string): EdgeguardError {
  return new EdgeguardError(
    'EG_TPM_STRUCTURE',
    `the ${what} is malformed (${detail}); it did not come from a TPM or was damaged in transit.`,
    {
      details: { structure: what },
    },
  );
}

export class TpmReader {
  private offset = 0;
  constructor(
    private readonly buf: Uint8Array,
    /** Name of the structure being parsed, for error sentences. */
    readonly what: string,
  ) {}

  get position(): number {
    return this.offset;
  }

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  private need(n: number, field: string): void {
    if (n > this.remaining)
      throw structureError(
        this.what,
        `truncated at ${field}: need ${n} bytes at offset ${this.offset}, have ${this.remaining}`,
      );
  }

  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.offset++]!;
  }

  u16(field: string): number {
    this.need(2, field);
    const v = (this.buf[this.offset]! << 8) | this.buf[this.offset + 1]!;
    this.offset += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const b = this.buf;
    const o = this.offset;
    const v = ((b[o]! << 24) >>> 0) + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);
    this.offset += 4;
    return v;
  }

  u64(field: string): bigint {
    const hi = this.u32(field);
    const lo = this.u32(field);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  bytes(n: number, field: string): Buffer {
    this.need(n, field);
    const out = Buffer.from(this.buf.subarray(this.offset, this.offset + n));
    this.offset += n;
    return out;
  }

  /** A TPM2B: u16 size, then that many bytes; `max` is the structure's declared maximum. */
  tpm2b(field: string, max = 0xffff): Buffer {
    const size = this.u16(`${field}.size`);
    if (size > max) throw structureError(this.what, `${field} is ${size} bytes, more than the ${max} allowed`);
    return this.bytes(size, field);
  }

  /** Raw bytes consumed between `start` and the current position. */
  slice(start: number): Buffer {
    return Buffer.from(this.buf.subarray(start, this.offset));
  }

  /** Part 2 requires exact sizes: fail on any byte left over. */
  end(): void {
    if (this.remaining !== 0)
      throw structureError(this.what, `${this.remaining} trailing bytes after offset ${this.offset}`);
  }
}

export class TpmWriter {
  private readonly parts: Buffer[] = [];
  u8(v: number): this {
    this.parts.push(Buffer.from([v & 0xff]));
    return this;
  }
  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    this.parts.push(b);
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    this.parts.push(b);
    return this;
  }
  bytes(b: Uint8Array): this {
    this.parts.push(Buffer.from(b));
    return this;
  }
  tpm2b(b: Uint8Array): this {
    return this.u16(b.length).bytes(b);
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}
