/**
 * `edgeguard attest eventlog` (what a measured-boot log says) and `attest policy create|check`
 * (boot policies from a golden log, and a what-if check of a log against one, for CI), `attest
 * policy assign` and `attest group set` (which policy the control plane appraises a device with).
 */
import { Command } from 'commander';
import { writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import {
  checkLogAgainstPolicy,
  createBootPolicy,
  formatBootPolicyYaml,
  parseBootPolicyYaml,
} from '../../attest/index.ts';
import { ERROR_EXIT_CODES, EdgeguardError, FILE_CAPS, fsError, readBoundedText } from '../../errors/index.ts';
import { PolicyStoredAnswer } from '../../fleet/index.ts';
import { eventLogReport, formatEventLogReport, readEventLogFile } from '../../eventlog/index.ts';
import { Output, globalOptions } from '../output.ts';
import { adminClient, run } from './fleet.ts';
import { withConnection, type ConnectionOptions } from '../connection.ts';
import { registerPcrAuthorizationCommands } from './attest-pcr.ts';
import { registerPredictCommand } from './attest-predict.ts';

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

  const policy = attest.command('policy').description('boot policies: make one from a golden log, check, assign');
  registerPolicyCommands(policy);
  registerAssignmentCommands(policy, attest);
  registerPcrAuthorizationCommands(attest);
  registerPredictCommand(attest);
}

function registerAssignmentCommands(policy: Command, attest: Command): void {
  withConnection(
    policy
      .command('assign')
      .description('store a boot policy on the control plane for a device or a group (admin certificate)')
      .argument('<policy>', 'the boot policy (YAML)')
      .option('--device <id>', 'the device it applies to (its own policy wins over its group)')
      .option('--group <name>', 'the group it applies to'),
  ).action(async (file: string, opts: ConnectionOptions & { device?: string; group?: string }, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    if ((opts.device === undefined) === (opts.group === undefined))
      throw new EdgeguardError('EG_USAGE', 'pass exactly one of --device ID or --group NAME.');
    const text = await readBoundedText(file, FILE_CAPS.config, 'read the boot policy');
    parseBootPolicyYaml(text, file);
    const target = opts.device !== undefined ? { device: opts.device } : { group: opts.group };
    const r = await run(adminClient(opts), (c) =>
      c.callChecked(PolicyStoredAnswer, 'policy', 'POST', '/v1/attestation/policies', {
        policy: text,
        label: basename(file),
        ...target,
      }),
    );
    const who = opts.device !== undefined ? `device ${opts.device}` : `group ${opts.group}`;
    out.result({ ok: true, sha256: r.sha256, ...target }, `${file} (sha256 ${r.sha256}) assigned to ${who}`);
  });

  withConnection(
    attest
      .command('group')
      .description("put a device in a group: the group's boot policy applies unless it has its own (admin certificate)")
      .argument('<group>', 'group name')
      .argument('<id>', 'device id'),
  ).action(async (groupName: string, id: string, opts: ConnectionOptions, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    const path = `/v1/attestation/groups/${encodeURIComponent(groupName)}/devices/${encodeURIComponent(id)}`;
    await run(adminClient(opts), (c) => c.call('PUT', path));
    out.result({ ok: true, group: groupName, device: id }, `${id} is in group ${groupName}`);
  });
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
      const text = await readBoundedText(opts.policy, FILE_CAPS.config, 'read the boot policy');
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
