/** Boots the prediction and release tests play: the default synthetic boot with another kernel. */
import { defaultSyntheticBoot, type SyntheticBoot } from '../../src/eventlog/index.ts';

/** Kernel 6.1.0-28 with its initrd and command line: PCRs 4, 8 and 9 change, nothing else. */
export function kernelUpdateBoot(): SyntheticBoot {
  return {
    ...defaultSyntheticBoot(),
    kernel: Buffer.from('vmlinuz-6.1.0-28'),
    initrd: Buffer.from('initrd.img-6.1.0-28'),
    cmdline: '/boot/vmlinuz-6.1.0-28 root=/dev/mmcblk0p2 ro quiet',
  };
}
