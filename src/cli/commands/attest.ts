/**
 * `edgeguard attest eventlog` (what a measured-boot log says) and `attest policy create|check`
 * (boot policies from a golden log, and a what-if check of a log against one, for CI).
 */
import { Command } from 'commander';
import { readFile, writeFile } from 'node:fs/promises';
import {
  checkLogAgainstPolicy,
  createBootPolicy,
  formatBootPolicyYaml,
  parseBootPolicyYaml,
} from '../../attest/index.ts';
import { ERROR_EXIT_CODES, fsError } from '../../errors/index.ts';
import { eventLogReport, formatEventLogReport, readEventLogFile } from '../../eventlog/index.ts';
import { Output, globalOptions } from '../output.ts';

export function registerAttestCommands(program: Command): void {
  const attest = program.command('attest').description('measured boot: event logs and boot policies');

  attest
    .command('eventlog')
    .description('parse a measured-boot event log (binary_bios_measurements): events, replayed PCRs, Secure Boot state')
    .argument('<file>', 'the event log, e.g. a copy of /sys/kernel/security/tpm0/binary_bios_measurements')
    .action(async (file: string, _opts: unknown, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const report = eventLogReport(await readEventLogFile(file));
      out.result(report, formatEventLogReport(report));
    });

  registerPolicyCommands(
    attest.command('policy').description('boot policies: make one from a golden log, check a log'),
  );
}

function registerPolicyCommands(policy: Command): void {
  policy
    .command('create')
    .description("make a boot policy (YAML) that a known-good device's log satisfies")
    .requiredOption('--from-log <file>', "the golden device's event log")
    .option('-o, --out <file>', 'write the policy here instead of stdout')
    .option('--exact-pcrs', 'also pin every replayed PCR value (any firmware or GRUB change then fails)')
    .option('--force', 'overwrite --out')
    .action(async (opts: { fromLog: string; out?: string; exactPcrs?: boolean; force?: boolean }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const created = createBootPolicy(await readEventLogFile(opts.fromLog), { exactPcrs: opts.exactPcrs });
      const yaml = formatBootPolicyYaml(created);
      if (!opts.out) {
        out.result(created, yaml.trimEnd());
        return;
      }
      await writeFile(opts.out, yaml, { flag: opts.force ? 'w' : 'wx' }).catch((e) => {
        throw fsError(e, opts.out!, 'write');
      });
      out.result(
        { ok: true, policy: opts.out, pcrs: created.pcrs },
        `boot policy for ${created.pcrs} written to ${opts.out}`,
      );
    });

  policy
    .command('check')
    .description("what-if: would this log pass the policy's checks (no quote: the log is taken as given)")
    .requiredOption('--log <file>', 'the event log to check')
    .requiredOption('--policy <file>', 'the boot policy (YAML)')
    .action(async (opts: { log: string; policy: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const text = await readFile(opts.policy, 'utf8').catch((e) => {
        throw fsError(e, opts.policy, 'read');
      });
      const reasons = checkLogAgainstPolicy(await readEventLogFile(opts.log), parseBootPolicyYaml(text, opts.policy));
      out.result({ pass: reasons.length === 0, reasons }, [
        reasons.length === 0 ? `${opts.log} passes ${opts.policy}` : `${opts.log} fails ${opts.policy}:`,
        ...reasons.map((r) => `  ${r.code}: ${r.detail}`),
      ]);
      // One document on stdout either way; a refused boot exits with EG_ATTEST_REFUSED's status (9).
      if (reasons.length > 0) {
        const refused = `the boot the log records does not satisfy the policy (${reasons.length} reason(s) above).`;
        if (!out.opts.json) process.stderr.write(`EG_ATTEST_REFUSED: ${refused}\n`);
        process.exitCode = ERROR_EXIT_CODES.EG_ATTEST_REFUSED;
      }
    });
}
