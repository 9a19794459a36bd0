/**
 * `edgeguard attest predict-pcrs`: the PCR values a device will hold after booting what a release
 * brings (eventlog/predict.ts), written as the values file `attest authorize-pcrs --values` signs.
 *
 *   attest predict-pcrs --log golden.bin --kernel sha256:HEX [--kernel-image sha256:HEX]
 *       [--initrd sha256:HEX] [--cmdline TEXT] [--replace SEQ=ALG:HEX] [--replace-text SEQ=TEXT]
 *       --pcrs sha256:0,1,2,3,4,5,7 -o values.json
 */
import { Command, InvalidArgumentError } from 'commander';
import { writeFile } from 'node:fs/promises';
import { fsError } from '../../errors/index.ts';
import {
  parseEventLog,
  predictPcrs,
  predictionFile,
  readEventLogBytes,
  type BankDigests,
  type BootChanges,
} from '../../eventlog/index.ts';
import { HASH_ALGS, formatPcrSelection, parsePcrSelection } from '../../tpm/index.ts';
import { Output, globalOptions } from '../output.ts';

const BANKS = new Map(Object.values(HASH_ALGS).map((h) => [h.name, h.size]));

/** "sha256:HEX" (repeatable per bank) into bank -> digest. */
export function parseBankDigest(value: string, previous: BankDigests = {}): BankDigests {
  const m = /^([a-z0-9]+):([0-9a-fA-F]+)$/.exec(value);
  const size = m ? BANKS.get(m[1]!) : undefined;
  if (!m || size === undefined || m[2]!.length !== size * 2)
    throw new InvalidArgumentError(`expected BANK:HEX, e.g. sha256: and 64 hex digits (banks ${[...BANKS.keys()]}).`);
  if (previous[m[1]!]) throw new InvalidArgumentError(`the ${m[1]} digest is given twice.`);
  return { ...previous, [m[1]!]: Buffer.from(m[2]!, 'hex') };
}

type EventChange = NonNullable<BootChanges['events']>[number];

function sequenceOf(value: string, flag: string): [number, string] {
  const m = /^(\d{1,6})=(.*)$/s.exec(value);
  if (!m) throw new InvalidArgumentError(`${flag} expects SEQ=..., SEQ an event number as \`attest eventlog\` shows.`);
  return [Number(m[1]), m[2]!];
}

function parseReplace(value: string, previous: EventChange[] = []): EventChange[] {
  const [sequence, digest] = sequenceOf(value, '--replace');
  const same = previous.find((e) => e.sequence === sequence && e.digests);
  if (same) {
    same.digests = parseBankDigest(digest, same.digests);
    return previous;
  }
  return [...previous, { sequence, digests: parseBankDigest(digest) }];
}

function parseReplaceText(value: string, previous: EventChange[] = []): EventChange[] {
  const [sequence, text] = sequenceOf(value, '--replace-text');
  return [...previous, { sequence, text }];
}

interface PredictOptions {
  log: string;
  pcrs: string;
  kernel?: BankDigests;
  kernelImage?: BankDigests;
  initrd?: BankDigests;
  cmdline?: string;
  replace?: EventChange[];
  replaceText?: EventChange[];
  out?: string;
  force?: boolean;
}

export function registerPredictCommand(attest: Command): void {
  attest
    .command('predict-pcrs')
    .description("predict a release's PCR values: replay a device's (or a golden) event log with new boot digests")
    .requiredOption('--log <file>', "the device's current event log (binary_bios_measurements) or a golden one")
    .requiredOption('--pcrs <selection>', 'the PCRs to predict, e.g. sha256:0,1,2,3,4,5,7 (the binding key policy)')
    .option(
      '--kernel <bank:hex>',
      'the new kernel file digest (PCR 9; PCR 4 too unless --kernel-image)',
      parseBankDigest,
    )
    .option('--kernel-image <bank:hex>', "the new kernel's Authenticode image digest (PCR 4)", parseBankDigest)
    .option('--initrd <bank:hex>', 'the new initrd file digest (PCR 9)', parseBankDigest)
    .option('--cmdline <text>', 'the new kernel command line as GRUB measures it (PCR 8)')
    .option('--replace <seq=bank:hex>', "any event's new digest, by its number in the log (repeatable)", parseReplace)
    .option(
      '--replace-text <seq=text>',
      "a GRUB string's new measured text, by its number (repeatable)",
      parseReplaceText,
    )
    .option('-o, --out <file>', 'the values file to write (for `attest authorize-pcrs --values`)')
    .option('--force', 'overwrite the output file')
    .action(async (opts: PredictOptions, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const selection = parsePcrSelection(opts.pcrs);
      const bytes = await readEventLogBytes(opts.log);
      const events = [...(opts.replace ?? []), ...(opts.replaceText ?? [])];
      const prediction = predictPcrs(parseEventLog(bytes), selection, {
        ...(opts.kernel ? { kernel: opts.kernel } : {}),
        ...(opts.kernelImage ? { kernelImage: opts.kernelImage } : {}),
        ...(opts.initrd ? { initrd: opts.initrd } : {}),
        ...(opts.cmdline !== undefined ? { cmdline: opts.cmdline } : {}),
        ...(events.length ? { events } : {}),
      });
      const file = predictionFile(prediction, formatPcrSelection(selection), bytes);
      if (opts.out)
        await writeFile(opts.out, JSON.stringify(file, null, 2) + '\n', { flag: opts.force ? 'w' : 'wx' }).catch(
          (e) => {
            throw fsError(e, opts.out!, 'write');
          },
        );
      for (const note of file.notes) out.warn(note);
      out.result({ ok: true, ...(opts.out ? { output: opts.out } : {}), ...file }, [
        ...file.replaced.map((r) => `replaced event ${r.sequence} (PCR ${r.pcr}, ${r.what})`),
        ...Object.entries(file.pcrValues).flatMap(([bank, v]) =>
          Object.entries(v).map(
            ([i, hex]) =>
              `  ${bank}:${i.padEnd(2)} ${hex}${file.changed.includes(`${bank}:${i}`) ? '  (changes)' : ''}`,
          ),
        ),
        opts.out
          ? `-> ${opts.out}; sign it: edgeguard attest authorize-pcrs --key KEY --pcrs ${file.pcrs} --values ${opts.out} -o AUTH.json`
          : 'no -o given: nothing written',
      ]);
    });
}
