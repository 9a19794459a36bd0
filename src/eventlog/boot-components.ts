/**
 * What the firmware and the bootloader started, from PCRs 4, 8 and 9 (TCG PC Client Platform
 * Firmware Profile 1.05, 3.3.4.5 "PCR[4]": EV_EFI_BOOT_SERVICES_APPLICATION for each UEFI image, by
 * its Authenticode digest; GRUB 2 "Measured Boot": PCR 8 its commands and the kernel command line,
 * PCR 9 every file it reads, kernel and initrd included).
 * Image and file digests cannot be recomputed from event data, so the security rule is on digests
 * alone: every image or file digest in these PCRs is a component, whatever its label says. The
 * component names (shim, bootloader, kernel, initrd) come from position and path and serve reports.
 */
import { EV } from './event-types.ts';
import type { EventLog, LogEvent } from './parse.ts';
import type { Finding } from './secure-boot.ts';
import { claimsUnbackedDigest, digestsMatch, eventDigestHex } from './verify-digest.ts';

export type ComponentKind = 'shim' | 'bootloader' | 'kernel' | 'initrd' | 'cmdline' | 'file';

export interface BootComponent {
  kind: ComponentKind;
  pcr: number;
  sequence: number;
  /** The event's SHA-256 digest (or its only bank's), hex: what a policy allows. */
  digest: string;
  /** The path or command line the event data names; not covered by the digest except for cmdline. */
  label: string;
}

export interface BootComponents {
  components: BootComponent[];
  findings: Finding[];
}

export const IMAGE_PCR = 4;
export const GRUB_COMMAND_PCR = 8;
export const GRUB_FILE_PCR = 9;

export function extractBootComponents(log: EventLog): BootComponents {
  const out: BootComponents = { components: [], findings: [] };
  const measured = (pcr: number) => log.events.filter((e) => e.pcr === pcr && e.type !== EV.NO_ACTION);
  readImages(measured(IMAGE_PCR), out);
  readGrubCommands(measured(GRUB_COMMAND_PCR), out);
  for (const event of measured(GRUB_FILE_PCR)) {
    const label = cString(event.data);
    out.components.push({
      kind: fileKind(label),
      pcr: GRUB_FILE_PCR,
      sequence: event.sequence,
      digest: eventDigestHex(event),
      label,
    });
  }
  return out;
}

/** PCR 4: an event whose data hashes to its digest is an action or separator; any other is an image. */
function readImages(events: LogEvent[], out: BootComponents): void {
  const images: LogEvent[] = [];
  for (const event of events) {
    const backed = digestsMatch(event);
    if (claimsUnbackedDigest(event, backed) || (backed && event.type === EV.EFI_BOOT_SERVICES_APPLICATION))
      out.findings.push({
        code: 'EVENT_RELABELLED',
        pcr: IMAGE_PCR,
        sequence: event.sequence,
        detail: 'its label does not match what its digest measured',
      });
    if (!backed) images.push(event);
  }
  images.forEach((event, i) =>
    out.components.push({
      kind: imageKind(i, images.length),
      pcr: IMAGE_PCR,
      sequence: event.sequence,
      digest: eventDigestHex(event),
      label: `image ${i + 1} of ${images.length}`,
    }),
  );
}

/** Boot order with shim: shim, then the bootloader, then the kernel it verified; by position only. */
function imageKind(index: number, count: number): ComponentKind {
  if (count >= 2 && index === 0) return 'shim';
  if (index <= 1) return 'bootloader';
  return 'kernel';
}

/**
 * PCR 8: GRUB logs "grub_cmd: CMD" or "kernel_cmdline: LINE" (NUL-terminated) and measures only the
 * text after the prefix, so the text is proven by the digest; one whose text does not hash to its
 * digest could hide a command line and is reported.
 */
function readGrubCommands(events: LogEvent[], out: BootComponents): void {
  for (const event of events) {
    const text = cString(event.data);
    const colon = text.indexOf(': ');
    const body = colon < 0 ? text : text.slice(colon + 2);
    if (!digestsMatch(event, Buffer.from(body, 'latin1'))) {
      out.findings.push({
        code: 'EVENT_UNVERIFIED',
        pcr: GRUB_COMMAND_PCR,
        sequence: event.sequence,
        detail: 'its text does not hash to its digest, so what it measured is unknown',
      });
    } else if (text.startsWith('kernel_cmdline: ')) {
      const digest = eventDigestHex(event);
      out.components.push({ kind: 'cmdline', pcr: GRUB_COMMAND_PCR, sequence: event.sequence, digest, label: body });
    }
  }
}

function fileKind(path: string): ComponentKind {
  const name = path.slice(path.lastIndexOf('/') + 1);
  if (/^(vmlinuz|vmlinux|bzImage|linux)/.test(name)) return 'kernel';
  if (/^(initrd|initramfs)/.test(name)) return 'initrd';
  return 'file';
}

function cString(data: Buffer): string {
  const nul = data.indexOf(0);
  return data.subarray(0, nul < 0 ? data.length : nul).toString('latin1');
}
