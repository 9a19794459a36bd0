/**
 * The local secure-boot state from the UEFI global variables SecureBoot and SetupMode (UEFI 2.10
 * section 3.3, "Globally Defined Variables"), read through efivarfs: each file holds the variable's
 * 32-bit little-endian attributes, then its data (Linux Documentation/filesystems/efivarfs.rst).
 * Both variables are one byte, 0 or 1, kept by the firmware in volatile storage with boot-service
 * and runtime access. Anything else is refused: these bytes decide what the check reports.
 * The remote counterpart (the event log replayed against a quote) belongs to attestation.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { EdgeguardError, fsError } from '../errors/index.ts';

export const EFI_GLOBAL_VARIABLE_GUID = '8be4df61-93ca-11d2-aa0d-00e098032b8c';

const EFI_VARIABLE_NON_VOLATILE = 0x1;
const EFI_VARIABLE_BOOTSERVICE_ACCESS = 0x2;
const EFI_VARIABLE_RUNTIME_ACCESS = 0x4;
const ATTRIBUTES_BYTES = 4;
const BOOLEAN_VARIABLE_BYTES = ATTRIBUTES_BYTES + 1;

export interface EfiBooleanVariable {
  attributes: number;
  value: boolean;
}

export type SecureBootState =
  | { status: 'not-uefi' }
  | { status: 'unreadable'; reason: string }
  | { status: 'read'; secureBoot: boolean; setupMode: boolean };

/** Parse one efivarfs file of a boolean global variable (SecureBoot, SetupMode). */
export function parseEfiBooleanVariable(bytes: Uint8Array, name: string): EfiBooleanVariable {
  if (bytes.length < BOOLEAN_VARIABLE_BYTES)
    throw new EdgeguardError(
      'EG_TRUNCATED',
      `the UEFI variable ${name} holds ${bytes.length} bytes, fewer than its 4 attribute bytes and 1 value byte.`,
    );
  if (bytes.length > BOOLEAN_VARIABLE_BYTES)
    throw new EdgeguardError(
      'EG_TRAILING_DATA',
      `the UEFI variable ${name} holds ${bytes.length} bytes; a boolean variable is 4 attribute bytes and 1 value byte.`,
    );
  const attributes = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).readUInt32LE(0);
  const required = EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS;
  if ((attributes & required) !== required || (attributes & EFI_VARIABLE_NON_VOLATILE) !== 0)
    throw new EdgeguardError(
      'EG_FORMAT',
      `the UEFI variable ${name} has attributes 0x${attributes.toString(16)}, not the firmware's volatile boot-service and runtime variable; do not trust this machine's secure-boot state.`,
    );
  const value = bytes[ATTRIBUTES_BYTES]!;
  if (value > 1) throw new EdgeguardError('EG_FORMAT', `the UEFI variable ${name} holds ${value}; it must be 0 or 1.`);
  return { attributes, value: value === 1 };
}

async function readVariable(efivars: string, name: string): Promise<EfiBooleanVariable | undefined> {
  const file = join(efivars, `${name}-${EFI_GLOBAL_VARIABLE_GUID}`);
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fsError(e, file, 'read the UEFI variable');
  }
  return parseEfiBooleanVariable(bytes, name);
}

/** `root` is the filesystem root to inspect: `/`, or a mounted device image. */
export async function readSecureBootState(root = '/'): Promise<SecureBootState> {
  const efi = join(root, 'sys', 'firmware', 'efi');
  if (!(await stat(efi).catch(() => undefined))) return { status: 'not-uefi' };
  const efivars = join(efi, 'efivars');
  const secureBoot = await readVariable(efivars, 'SecureBoot');
  const setupMode = await readVariable(efivars, 'SetupMode');
  if (!secureBoot || !setupMode)
    return {
      status: 'unreadable',
      reason: `${efivars} lacks ${secureBoot ? 'SetupMode' : 'SecureBoot'}: efivarfs is not mounted there (mount -t efivarfs efivarfs ${efivars}) or the firmware has no secure boot`,
    };
  return { status: 'read', secureBoot: secureBoot.value, setupMode: setupMode.value };
}
