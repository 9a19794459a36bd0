/** `edgeguard attest eventlog`: what a measured-boot event log says, for operators and CI. */
import { Command } from 'commander';
import { eventLogReport, formatEventLogReport, readEventLogFile } from '../../eventlog/index.ts';
import { Output, globalOptions } from '../output.ts';

export function registerAttestCommands(program: Command): void {
  const attest = program.command('attest').description('measured boot: event logs and appraisal policies');

  attest
    .command('eventlog')
    .description('parse a measured-boot event log (binary_bios_measurements): events, replayed PCRs, Secure Boot state')
    .argument('<file>', 'the event log, e.g. a copy of /sys/kernel/security/tpm0/binary_bios_measurements')
    .action(async (file: string, _opts: unknown, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const report = eventLogReport(await readEventLogFile(file));
      out.result(report, formatEventLogReport(report));
    });
}
