/**
 * Bounds-checked little-endian reader for measured-boot event logs (the log is written by UEFI
 * firmware in the CPU's byte order, unlike TPM structures): the same contract as the TPM reader in
 * src/tpm/reader.ts, so every length is checked against the bytes left before anything is sliced or
 * allocated, and a short read is EG_EVENTLOG_MALFORMED instead of a RangeError.
 */
import { EdgeguardError } from '../errors/index.ts';

export function malformedLog(detail: string, offset?: number): EdgeguardError {
  return new EdgeguardError(
    'EG_EVENTLOG_MALFORMED',
    `the measured-boot event log is malformed (${detail}); it was truncated, damaged or not written by firmware. Collect it again from the device.`,
    { details: offset === undefined ? {} : { offset } },
  );
}

export class LogReader {
  private offset = 0;
  constructor(
    private readonly buf: Uint8Array,
    /** What is being read, for error sentences (e.g. "event 12"). */
    public what: string,
  ) {}

  get position(): number {
    return this.offset;
  }

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  private need(n: number, field: string): void {
    if (n > this.remaining)
      throw malformedLog(
        `${this.what} is truncated at ${field}: needs ${n} bytes at offset ${this.offset}, ${this.remaining} left`,
        this.offset,
      );
  }

  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.offset++]!;
  }

  u16(field: string): number {
    this.need(2, field);
    const v = this.buf[this.offset]! | (this.buf[this.offset + 1]! << 8);
    this.offset += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const b = this.buf;
    const o = this.offset;
    const v = (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16)) + b[o + 3]! * 0x1000000;
    this.offset += 4;
    return v;
  }

  u64(field: string): bigint {
    const lo = this.u32(field);
    const hi = this.u32(field);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** `n` bytes, copied, after checking that they are there. */
  bytes(n: number, field: string): Buffer {
    this.need(n, field);
    const out = Buffer.from(this.buf.subarray(this.offset, this.offset + n));
    this.offset += n;
    return out;
  }

  /** Fail on anything left over, so a structure's declared size is its real size. */
  end(): void {
    if (this.remaining !== 0)
      throw malformedLog(`${this.remaining} bytes left over after ${this.what} at offset ${this.offset}`, this.offset);
  }
}

/** Little-endian writer for building logs (encode.ts). */
export class LogWriter {
  private readonly parts: Buffer[] = [];

  private fixed(size: number, put: (b: Buffer) => void): this {
    const b = Buffer.alloc(size);
    put(b);
    this.parts.push(b);
    return this;
  }

  u8(v: number): this {
    return this.fixed(1, (b) => b.writeUInt8(v & 0xff));
  }
  u16(v: number): this {
    return this.fixed(2, (b) => b.writeUInt16LE(v));
  }
  u32(v: number): this {
    return this.fixed(4, (b) => b.writeUInt32LE(v >>> 0));
  }
  bytes(b: Uint8Array): this {
    this.parts.push(Buffer.from(b));
    return this;
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}
