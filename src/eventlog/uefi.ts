/**
 * UEFI structures found in event data: UEFI_VARIABLE_DATA (TCG PC Client Platform Firmware Profile
 * 1.05, 10.3.1) and EFI_SIGNATURE_LIST / EFI_SIGNATURE_DATA (UEFI 2.10, 32.4.1 "Signature
 * Database"), the contents of PK, KEK, db and dbx. Both are read from event data that the caller
 * has already matched against its digest; they are still outside bytes and are read bounded.
 */
import { digestOf } from './digest.ts';
import { LogReader, malformedLog } from './reader.ts';

export const EFI_GLOBAL_VARIABLE = '8be4df61-93ca-11d2-aa0d-00e098032b8c';
export const EFI_IMAGE_SECURITY_DATABASE = 'd719b2cb-3d3a-4596-a3bc-dad00e67656f';
export const EFI_CERT_SHA256 = 'c1c41626-504c-4092-aca9-41f936934328';
export const EFI_CERT_X509 = 'a5c059a1-94e4-4aa7-87b5-ab155c2bf072';

/** Variable names are short; a few hundred characters is already absurd. */
const MAX_NAME_CHARS = 1024;
/** dbx holds a few hundred hashes today; ten thousand entries bounds work on a hostile list. */
export const MAX_SIGNATURE_ENTRIES = 10_000;
const SIGNATURE_LIST_HEADER = 28;
const GUID_SIZE = 16;

/** EFI_GUID: u32, u16, u16 little-endian, then 8 bytes in order, printed as the usual text form. */
export function formatGuid(b: Buffer): string {
  const h = b.toString('hex', 0, 16);
  // Byte i is h[2i, 2i + 2]: the first three fields are read back to front.
  const le = (from: number, to: number) => {
    let out = '';
    for (let i = to - 1; i >= from; i--) out += h.slice(2 * i, 2 * i + 2);
    return out;
  };
  return `${le(0, 4)}-${le(4, 6)}-${le(6, 8)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function guidBytes(text: string): Buffer {
  const [a, b, c, d, e] = text.split('-') as [string, string, string, string, string];
  const le = (x: string) => Buffer.from(x, 'hex').reverse();
  return Buffer.concat([le(a), le(b), le(c), Buffer.from(d + e, 'hex')]);
}

export interface UefiVariableData {
  guid: string;
  name: string;
  value: Buffer;
}

/** UEFI_VARIABLE_DATA: VariableName GUID, u64 name length (chars), u64 data length, UTF-16 name, data. */
export function parseUefiVariableData(data: Buffer): UefiVariableData {
  const r = new LogReader(data, 'UEFI_VARIABLE_DATA');
  const guid = formatGuid(r.bytes(GUID_SIZE, 'VariableName'));
  const nameChars = r.u64('UnicodeNameLength');
  const valueLength = r.u64('VariableDataLength');
  if (nameChars > BigInt(MAX_NAME_CHARS)) throw malformedLog(`a variable name of ${nameChars} characters`);
  if (valueLength > BigInt(r.remaining))
    throw malformedLog(`variable data of ${valueLength} bytes past the event's end`);
  const name = r.bytes(Number(nameChars) * 2, 'UnicodeName').toString('utf16le');
  const value = r.bytes(Number(valueLength), 'VariableData');
  r.end();
  return { guid, name, value };
}

export function encodeUefiVariableData(v: UefiVariableData): Buffer {
  const name = Buffer.from(v.name, 'utf16le');
  const sizes = Buffer.alloc(16);
  sizes.writeBigUInt64LE(BigInt(v.name.length), 0);
  sizes.writeBigUInt64LE(BigInt(v.value.length), 8);
  return Buffer.concat([guidBytes(v.guid), sizes, name, v.value]);
}

export interface SignatureEntry {
  /** "sha256" for an EFI_CERT_SHA256 hash, "x509" for a certificate, otherwise the type GUID. */
  type: string;
  owner: string;
  /** The hash itself for "sha256" entries; SHA-256 of the entry's data (e.g. the DER certificate) otherwise. */
  sha256: string;
}

function entryType(guid: string): string {
  return guid === EFI_CERT_SHA256 ? 'sha256' : guid === EFI_CERT_X509 ? 'x509' : guid;
}

/** The entries of a signature database (a run of EFI_SIGNATURE_LISTs), each named by its SHA-256 digest. */
export function parseSignatureDatabase(value: Buffer): SignatureEntry[] {
  const r = new LogReader(value, 'EFI_SIGNATURE_LIST');
  const entries: SignatureEntry[] = [];
  while (r.remaining > 0) {
    const type = entryType(formatGuid(r.bytes(GUID_SIZE, 'SignatureType')));
    const listSize = r.u32('SignatureListSize');
    const headerSize = r.u32('SignatureHeaderSize');
    const signatureSize = r.u32('SignatureSize');
    const body = listSize - SIGNATURE_LIST_HEADER - headerSize;
    if (body < 0 || signatureSize <= GUID_SIZE || body % signatureSize !== 0)
      throw malformedLog(`a signature list of ${listSize} bytes cannot hold entries of ${signatureSize}`);
    if (entries.length + body / signatureSize > MAX_SIGNATURE_ENTRIES)
      throw malformedLog(`a signature database with more than ${MAX_SIGNATURE_ENTRIES} entries`);
    r.bytes(headerSize, 'SignatureHeader');
    for (let n = body / signatureSize; n > 0; n--) {
      const owner = formatGuid(r.bytes(GUID_SIZE, 'SignatureOwner'));
      const data = r.bytes(signatureSize - GUID_SIZE, 'SignatureData');
      const sha256 = type === 'sha256' && data.length === 32 ? data : digestOf('sha256', data);
      entries.push({ type, owner, sha256: sha256.toString('hex') });
    }
  }
  return entries;
}

export function encodeSignatureList(type: string, owner: string, entries: Buffer[]): Buffer {
  const signatureSize = GUID_SIZE + (entries[0]?.length ?? 0);
  const head = Buffer.alloc(12);
  head.writeUInt32LE(SIGNATURE_LIST_HEADER + signatureSize * entries.length, 0);
  head.writeUInt32LE(0, 4);
  head.writeUInt32LE(signatureSize, 8);
  return Buffer.concat([guidBytes(type), head, ...entries.flatMap((e) => [guidBytes(owner), e])]);
}
