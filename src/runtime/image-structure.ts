/**
 * The structure of an image body checked as its bytes arrive, before it is decoded: a body that
 * starts like a PNG or JPEG and is garbage after its signature is refused at its first bad chunk
 * or segment, not after it has been read whole and failed to decode.
 *
 * PNG: the signature; then chunks (length, type, data, CRC-32), the first IHDR of length 13 with
 * plausible dimensions (at most `maxPixels`) and a valid bit depth and colour type; every chunk's
 * type four ASCII letters, its length within what is left of the announced body, its CRC-32
 * correct (but IDAT's: the image data is most of the body, a CRC in JavaScript costs ~3 ms per MiB,
 * about as much as receiving it, and the decoder checks it, with zlib's Adler-32, once the body is
 * in); IEND (empty) ends the image. JPEG: SOI; then marker segments, each a known marker whose
 * length fits what is left of the body; a frame header (SOFn) with dimensions within `maxPixels`
 * before the first scan; entropy-coded data with only stuffed bytes, restart markers or a next
 * marker after 0xFF; EOI ends the image. Bytes after the end of the image are not looked at (the
 * decoder ignores them too). What this passes can still fail to decode: it refuses early, it does
 * not decode.
 */
import { refusal, type EdgeguardError } from '../errors/index.ts';

export type ImageFormat = 'image/png' | 'image/jpeg';

export interface ImageStructureOptions {
  /** The whole body's length: the announced Content-Length, or the body limit when none is announced. */
  bodyBytes: number;
  /** Largest width x height accepted. */
  maxPixels: number;
}

/** The check of one body; `push` each chunk as it arrives, `end` when it is complete. */
export interface ImageStructureCheck {
  /** EG_INPUT at the first byte that cannot belong to such an image; undefined while it still can. */
  push(chunk: Uint8Array): EdgeguardError | undefined;
  /** EG_INPUT if the body ended before the image did. */
  end(): EdgeguardError | undefined;
}

export function imageStructureCheck(format: ImageFormat, o: ImageStructureOptions): ImageStructureCheck {
  return format === 'image/png' ? new PngCheck(o) : new JpegCheck(o);
}

/** Check a complete body at once; EG_INPUT or undefined. */
export function checkImageStructure(
  format: ImageFormat,
  bytes: Uint8Array,
  maxPixels: number,
): EdgeguardError | undefined {
  const check = imageStructureCheck(format, { bodyBytes: bytes.length, maxPixels });
  return check.push(bytes) ?? check.end();
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO-HDLC, as PNG uses) of `bytes[from, to)` continued from `crc` (start with 0xffffffff, finish with ^ 0xffffffff). */
function crcUpdate(crc: number, bytes: Uint8Array, from: number, to: number): number {
  let c = crc;
  for (let i = from; i < to; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return c;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
/** Valid bit depths per PNG colour type. */
const PNG_DEPTHS: Record<number, number[]> = {
  0: [1, 2, 4, 8, 16],
  2: [8, 16],
  3: [1, 2, 4, 8],
  4: [8, 16],
  6: [8, 16],
};

function invalid(name: string, why: string, at: number): EdgeguardError {
  return refusal(
    'EG_INPUT',
    `the body is not a valid ${name} image: ${why} (at byte ${at}); send the image file as it was written.`,
  );
}

/** The byte loop both formats share: `step` consumes from `chunk[i]` and says where to go on. */
abstract class StreamCheck implements ImageStructureCheck {
  /** Bytes seen before the current chunk. */
  protected at = 0;
  /** The image has ended: later bytes are not looked at. */
  protected done = false;

  constructor(
    protected readonly o: ImageStructureOptions,
    private readonly kind: { name: string; format: ImageFormat; signatureBytes: number; last: string },
  ) {}

  push(chunk: Uint8Array): EdgeguardError | undefined {
    let i = 0;
    while (i < chunk.length && !this.done) {
      const next = this.step(chunk, i);
      if (typeof next !== 'number') return next;
      i = next;
    }
    this.at += chunk.length;
    return undefined;
  }

  end(): EdgeguardError | undefined {
    if (this.done) return undefined;
    const { name, format, signatureBytes, last } = this.kind;
    return this.at < signatureBytes
      ? notSignature(name, format)
      : invalid(name, `the body ends before the image does (no ${last})`, this.at);
  }

  /** One step from `chunk[i]`: the index to go on from, or the error. */
  protected abstract step(chunk: Uint8Array, i: number): number | EdgeguardError;
}

class PngCheck extends StreamCheck {
  private state: 'signature' | 'header' | 'data' | 'crc' = 'signature';
  /** The bytes of the current fixed-size field (chunk header, IHDR data, CRC). */
  private field: number[] = [];
  private chunkType = '';
  private chunkLeft = 0;
  private crc = 0;
  private chunks = 0;

  constructor(o: ImageStructureOptions) {
    super(o, { name: 'PNG', format: 'image/png', signatureBytes: 8, last: 'IEND chunk' });
  }

  protected step(chunk: Uint8Array, i: number): number | EdgeguardError {
    const pos = this.at + i;
    switch (this.state) {
      case 'signature':
        if (chunk[i] !== PNG_SIGNATURE[pos]) return notSignature('PNG', 'image/png');
        if (pos + 1 === PNG_SIGNATURE.length) this.state = 'header';
        return i + 1;
      case 'header': {
        this.field.push(chunk[i]!);
        if (this.field.length < 8) return i + 1;
        const error = this.header(pos - 7);
        if (error) return error;
        return i + 1;
      }
      case 'data': {
        const n = Math.min(this.chunkLeft, chunk.length - i);
        if (this.chunkType !== 'IDAT') this.crc = crcUpdate(this.crc, chunk, i, i + n);
        if (this.chunkType === 'IHDR') for (let k = i; k < i + n; k++) this.field.push(chunk[k]!);
        this.chunkLeft -= n;
        if (this.chunkLeft === 0) {
          if (this.chunkType === 'IHDR') {
            const error = this.ihdr(pos);
            if (error) return error;
          }
          this.state = 'crc';
          this.field = [];
        }
        return i + n;
      }
      case 'crc': {
        this.field.push(chunk[i]!);
        if (this.field.length < 4) return i + 1;
        const f = this.field;
        const stored = ((f[0]! << 24) | (f[1]! << 16) | (f[2]! << 8) | f[3]!) >>> 0;
        if (this.chunkType !== 'IDAT' && stored !== (this.crc ^ 0xffffffff) >>> 0)
          return invalid('PNG', `the CRC of its ${printable(this.chunkType)} chunk is wrong`, pos - 3);
        this.field = [];
        if (this.chunkType === 'IEND') this.done = true;
        this.state = 'header';
        return i + 1;
      }
    }
  }

  /** A chunk's length and type, at `start`. */
  private header(start: number): EdgeguardError | undefined {
    const f = this.field;
    const length = ((f[0]! << 24) | (f[1]! << 16) | (f[2]! << 8) | f[3]!) >>> 0;
    const type = String.fromCharCode(f[4]!, f[5]!, f[6]!, f[7]!);
    this.field = [];
    if (!/^[A-Za-z]{4}$/.test(type)) return invalid('PNG', 'a chunk type is not four letters', start + 4);
    if (this.chunks === 0 && (type !== 'IHDR' || length !== 13))
      return invalid('PNG', 'its first chunk is not an IHDR chunk of 13 bytes', start);
    if (this.chunks > 0 && type === 'IHDR') return invalid('PNG', 'it has a second IHDR chunk', start);
    if (type === 'IEND' && length !== 0) return invalid('PNG', 'its IEND chunk is not empty', start);
    if (start + 12 + length > this.o.bodyBytes)
      return invalid(
        'PNG',
        `its ${printable(type)} chunk of ${length} bytes does not fit in the ${this.o.bodyBytes}-byte body`,
        start,
      );
    this.chunks++;
    this.chunkType = type;
    this.chunkLeft = length;
    this.crc = crcUpdate(0xffffffff, Uint8Array.from(f.slice(4, 8)), 0, 4);
    this.state = length === 0 ? 'crc' : 'data';
    return undefined;
  }

  /** IHDR's 13 bytes, ending at `end`: dimensions within the pixel limit, a valid bit depth and colour type. */
  private ihdr(end: number): EdgeguardError | undefined {
    const f = this.field;
    const width = ((f[0]! << 24) | (f[1]! << 16) | (f[2]! << 8) | f[3]!) >>> 0;
    const height = ((f[4]! << 24) | (f[5]! << 16) | (f[6]! << 8) | f[7]!) >>> 0;
    const [depth, colour, compression, filter, interlace] = f.slice(8, 13) as [number, number, number, number, number];
    const at = end - 12;
    if (width === 0 || height === 0) return invalid('PNG', `its IHDR says ${width} x ${height} pixels`, at);
    if (width * height > this.o.maxPixels)
      return invalid('PNG', `it is ${width} x ${height} pixels, more than the ${this.o.maxPixels} accepted`, at);
    if (!PNG_DEPTHS[colour]?.includes(depth))
      return invalid('PNG', `its IHDR has colour type ${colour} with bit depth ${depth}`, at + 8);
    if (compression !== 0 || filter !== 0 || interlace > 1)
      return invalid('PNG', 'its IHDR names an unknown compression, filter or interlace method', at + 10);
    return undefined;
  }
}

function notSignature(name: string, format: ImageFormat): EdgeguardError {
  return refusal('EG_INPUT', `the body is not a ${name} image (its first bytes do not match ${format}).`);
}

function printable(type: string): string {
  return /^[A-Za-z]{4}$/.test(type) ? type : 'unnamed';
}

/** Markers with a length field that may appear in a JPEG file (ITU T.81 table B.1, APPn, COM). */
function jpegSegmentMarker(m: number): boolean {
  return (
    (m >= 0xc0 && m <= 0xcf && m !== 0xc8) || // SOFn, DHT (C4), DAC (CC); C8 is reserved
    (m >= 0xdb && m <= 0xdf) || // DQT, DNL, DRI, DHP, EXP
    m === 0xda || // SOS
    (m >= 0xe0 && m <= 0xef) || // APPn
    m === 0xfe // COM
  );
}

/** SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC). */
function jpegFrameMarker(m: number): boolean {
  return m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;
}

class JpegCheck extends StreamCheck {
  private state: 'soi' | 'marker' | 'code' | 'length' | 'segment' | 'scan' | 'scanFF' = 'soi';
  private field: number[] = [];
  private marker = 0;
  private segmentLeft = 0;
  private frame = false;

  constructor(o: ImageStructureOptions) {
    super(o, { name: 'JPEG', format: 'image/jpeg', signatureBytes: 3, last: 'EOI marker' });
  }

  protected step(chunk: Uint8Array, i: number): number | EdgeguardError {
    const pos = this.at + i;
    const b = chunk[i]!;
    switch (this.state) {
      case 'soi':
        // FF D8, and the FF that starts the first segment (what the signature check always took).
        if (b !== [0xff, 0xd8, 0xff][pos]) return notSignature('JPEG', 'image/jpeg');
        if (pos === 2) this.state = 'code';
        return i + 1;
      case 'marker':
        if (b !== 0xff) return invalid('JPEG', 'a segment is not followed by a marker', pos);
        this.state = 'code';
        return i + 1;
      case 'code':
        return this.code(b, pos) ?? i + 1;
      case 'length':
        this.field.push(b);
        if (this.field.length < 2) return i + 1;
        return this.length(pos - 1) ?? i + 1;
      case 'segment': {
        const n = Math.min(this.segmentLeft, chunk.length - i);
        if (jpegFrameMarker(this.marker))
          for (let k = i; k < i + n && this.field.length < 5; k++) this.field.push(chunk[k]!);
        this.segmentLeft -= n;
        if (this.segmentLeft > 0) return i + n;
        if (jpegFrameMarker(this.marker)) {
          const error = this.frameHeader(pos);
          if (error) return error;
        }
        this.state = this.marker === 0xda ? 'scan' : 'marker';
        return i + n;
      }
      case 'scan': {
        const ff = chunk.indexOf(0xff, i);
        if (ff < 0) return chunk.length;
        this.state = 'scanFF';
        return ff + 1;
      }
      case 'scanFF':
        // In entropy-coded data 0xFF is followed by a stuffed 00, a restart marker, or the next marker.
        if (b === 0x00 || (b >= 0xd0 && b <= 0xd7)) {
          this.state = 'scan';
          return i + 1;
        }
        if (b === 0xff) return i + 1;
        return this.code(b, pos) ?? i + 1;
    }
  }

  /** A marker code at `pos` (after its 0xFF and any fill bytes). */
  private code(m: number, pos: number): EdgeguardError | undefined {
    if (m === 0xff) return undefined; // fill byte
    if (m === 0xd9) {
      if (!this.frame) return invalid('JPEG', 'it ends (EOI) before any frame', pos);
      this.done = true;
      return undefined;
    }
    if (m === 0x01 || (m >= 0xd0 && m <= 0xd7)) {
      this.state = 'marker';
      return undefined;
    }
    if (!jpegSegmentMarker(m))
      return invalid('JPEG', `0xFF${m.toString(16).padStart(2, '0')} is not a JPEG marker`, pos);
    if (m === 0xda && !this.frame) return invalid('JPEG', 'a scan (SOS) comes before the frame header', pos);
    if (jpegFrameMarker(m) && this.frame) return invalid('JPEG', 'it has a second frame header', pos);
    this.marker = m;
    this.field = [];
    this.state = 'length';
    return undefined;
  }

  /** A segment's two length bytes, starting at `start`. */
  private length(start: number): EdgeguardError | undefined {
    const length = (this.field[0]! << 8) | this.field[1]!;
    this.field = [];
    if (length < 2) return invalid('JPEG', `a segment length of ${length}`, start);
    if (jpegFrameMarker(this.marker) && length < 8) return invalid('JPEG', 'its frame header is too short', start);
    if (start + length > this.o.bodyBytes)
      return invalid('JPEG', `a segment of ${length} bytes does not fit in the ${this.o.bodyBytes}-byte body`, start);
    this.segmentLeft = length - 2;
    if (jpegFrameMarker(this.marker)) this.frame = true;
    this.state = this.segmentLeft === 0 ? (this.marker === 0xda ? 'scan' : 'marker') : 'segment';
    return undefined;
  }

  /** The frame header's precision, height and width, the segment ending at `end`. */
  private frameHeader(end: number): EdgeguardError | undefined {
    const [, h1, h0, w1, w0] = this.field as [number, number, number, number, number];
    const height = (h1 << 8) | h0;
    const width = (w1 << 8) | w0;
    if (width === 0 || height === 0) return invalid('JPEG', `its frame header says ${width} x ${height} pixels`, end);
    if (width * height > this.o.maxPixels)
      return invalid('JPEG', `it is ${width} x ${height} pixels, more than the ${this.o.maxPixels} accepted`, end);
    return undefined;
  }
}
