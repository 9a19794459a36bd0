/**
 * A synthetic but well-formed UEFI boot with shim and GRUB, for playing into swtpm: PCR 0-7
 * firmware events and separators, the Secure Boot variables in PCR 7, shim, GRUB and the kernel as
 * PCR 4 images, the command line in PCR 8, kernel and initrd files in PCR 9. Every part is
 * settable so a test or the demo can boot something the policy must refuse.
 */
import { createHash } from 'node:crypto';
import { HASH_ALGS } from '../tpm/index.ts';
import { measuredEvent, type EventToWrite } from './encode.ts';
import { EV } from './event-types.ts';
import {
  EFI_CERT_SHA256,
  EFI_CERT_X509,
  EFI_GLOBAL_VARIABLE,
  EFI_IMAGE_SECURITY_DATABASE,
  encodeSignatureList,
  encodeUefiVariableData,
} from './uefi.ts';

export interface SyntheticBoot {
  secureBoot: boolean;
  /** DER-like certificate bytes for PK, KEK and db (only their digests matter here). */
  pk: Buffer;
  kek: Buffer;
  db: Buffer;
  /** SHA-256 image hashes revoked in dbx. */
  dbx: Buffer[];
  /** Image bytes whose digests stand for Authenticode hashes (PCR 4) and file hashes (PCR 9). */
  shim: Buffer;
  bootloader: Buffer;
  kernel: Buffer;
  initrd: Buffer;
  cmdline: string;
}

const OWNER = '77fa9abd-0359-4d32-bd60-28f4e78f784b';

export function defaultSyntheticBoot(): SyntheticBoot {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return {
    secureBoot: true,
    pk: Buffer.from('edgeguard demo platform key'),
    kek: Buffer.from('edgeguard demo key exchange key'),
    db: Buffer.from('edgeguard demo signature database certificate'),
    dbx: [digest('revoked bootloader 1'), digest('revoked bootloader 2')],
    shim: Buffer.from('shimx64.efi 15.8'),
    bootloader: Buffer.from('grubx64.efi 2.12'),
    kernel: Buffer.from('vmlinuz-6.1.0-edge'),
    initrd: Buffer.from('initrd.img-6.1.0-edge'),
    cmdline: '/boot/vmlinuz-6.1.0-edge root=/dev/mmcblk0p2 ro quiet',
  };
}

/** An event whose digest is `hashOf`'s hash, not the data's: how images and files are measured. */
function imageEvent(pcr: number, type: number, hashOf: Buffer, data: Buffer, banks: number[]): EventToWrite {
  const digests = banks.map((alg) => ({ alg, digest: createHash(HASH_ALGS[alg]!.node).update(hashOf).digest() }));
  return { pcr, type, digests, data };
}

function variable(name: string, guid: string, value: Buffer, banks: number[]): EventToWrite {
  return measuredEvent(7, EV.EFI_VARIABLE_DRIVER_CONFIG, encodeUefiVariableData({ guid, name, value }), banks);
}

/**
 * UEFI_IMAGE_LOAD_EVENT (Platform Firmware Profile 10.2.3): location, length and link address of
 * the image, then its device path, here a single media file-path node (UEFI 2.10, 10.3.5.4) and the end node.
 */
function imageLoadEvent(filePath: string): Buffer {
  const name = Buffer.from(`${filePath}\0`, 'utf16le');
  const node = Buffer.alloc(4);
  node.writeUInt8(4, 0);
  node.writeUInt8(4, 1);
  node.writeUInt16LE(4 + name.length, 2);
  const devicePath = Buffer.concat([node, name, Buffer.from([0x7f, 0xff, 0x04, 0x00])]);
  const head = Buffer.alloc(32);
  head.writeBigUInt64LE(0x80000000n, 0);
  head.writeBigUInt64LE(0x100000n, 8);
  head.writeBigUInt64LE(BigInt(devicePath.length), 24);
  return Buffer.concat([head, devicePath]);
}

/** GRUB measures the text after the prefix, and logs it with the prefix and a NUL. */
function grubString(pcr: number, prefix: string, text: string, banks: number[]): EventToWrite {
  const event = measuredEvent(pcr, EV.IPL, Buffer.from(text, 'latin1'), banks);
  return { ...event, data: Buffer.from(`${prefix}${text}\0`, 'latin1') };
}

export function syntheticBootEvents(boot: SyntheticBoot, banks: number[]): EventToWrite[] {
  const cert = (c: Buffer) => encodeSignatureList(EFI_CERT_X509, OWNER, [c]);
  const separator = (pcr: number) => measuredEvent(pcr, EV.SEPARATOR, Buffer.alloc(4), banks);
  const path = (p: string) => Buffer.from(`${p}\0`, 'latin1');
  return [
    measuredEvent(0, EV.S_CRTM_VERSION, Buffer.from('edgeguard synthetic firmware 1.0\0', 'utf16le'), banks),
    imageEvent(0, EV.EFI_PLATFORM_FIRMWARE_BLOB, Buffer.from('firmware volume'), Buffer.alloc(16), banks),
    variable('SecureBoot', EFI_GLOBAL_VARIABLE, Buffer.from([boot.secureBoot ? 1 : 0]), banks),
    variable('PK', EFI_GLOBAL_VARIABLE, cert(boot.pk), banks),
    variable('KEK', EFI_GLOBAL_VARIABLE, cert(boot.kek), banks),
    variable('db', EFI_IMAGE_SECURITY_DATABASE, cert(boot.db), banks),
    variable('dbx', EFI_IMAGE_SECURITY_DATABASE, encodeSignatureList(EFI_CERT_SHA256, OWNER, boot.dbx), banks),
    ...[0, 1, 2, 3, 5, 6, 7].map(separator),
    measuredEvent(4, EV.EFI_ACTION, Buffer.from('Calling EFI Application from Boot Option'), banks),
    separator(4),
    imageEvent(4, EV.EFI_BOOT_SERVICES_APPLICATION, boot.shim, imageLoadEvent('\\EFI\\debian\\shimx64.efi'), banks),
    measuredEvent(
      7,
      EV.EFI_VARIABLE_AUTHORITY,
      encodeUefiVariableData({ guid: EFI_IMAGE_SECURITY_DATABASE, name: 'db', value: boot.db }),
      banks,
    ),
    imageEvent(
      4,
      EV.EFI_BOOT_SERVICES_APPLICATION,
      boot.bootloader,
      imageLoadEvent('\\EFI\\debian\\grubx64.efi'),
      banks,
    ),
    grubString(8, 'grub_cmd: ', 'linux /boot/vmlinuz-6.1.0-edge', banks),
    imageEvent(9, EV.IPL, boot.kernel, path('/boot/vmlinuz-6.1.0-edge'), banks),
    grubString(8, 'kernel_cmdline: ', boot.cmdline, banks),
    imageEvent(4, EV.EFI_BOOT_SERVICES_APPLICATION, boot.kernel, imageLoadEvent('\\vmlinuz-6.1.0-edge'), banks),
    grubString(8, 'grub_cmd: ', 'initrd /boot/initrd.img-6.1.0-edge', banks),
    imageEvent(9, EV.IPL, boot.initrd, path('/boot/initrd.img-6.1.0-edge'), banks),
    measuredEvent(5, EV.EFI_ACTION, Buffer.from('Exit Boot Services Invocation'), banks),
    measuredEvent(5, EV.EFI_ACTION, Buffer.from('Exit Boot Services Returned with Success'), banks),
  ];
}
