/**
 * `edgeguard harden egress` writes the device's egress rules (nftables, NetworkPolicy or systemd
 * drop-in) from agent.yaml's `egress:` section; `edgeguard harden check` is the preflight that says
 * whether they, and the boot chain, can hold on this machine. Exits EG_PREFLIGHT's status (9)
 * when any check warns.
 */
import { Command, Option } from 'commander';
import { writeFile } from 'node:fs/promises';
import { loadAgentConfig } from '../../agent/index.ts';
import { ERROR_EXIT_CODES, EdgeguardError, fsError } from '../../errors/index.ts';
import {
  AGENT_POD_LABELS,
  checkHardening,
  planEgress,
  renderNetworkPolicy,
  renderNftables,
  renderSystemdDropIn,
  type EgressPlan,
} from '../../harden/index.ts';
import { Output, globalOptions } from '../output.ts';

const FORMATS = ['nftables', 'networkpolicy', 'systemd'] as const;
type EgressFormat = (typeof FORMATS)[number];

interface EgressOpts {
  config: string;
  format: EgressFormat;
  out?: string;
  force?: boolean;
  namespace: string;
}

function render(plan: EgressPlan, opts: EgressOpts): string {
  if (opts.format === 'nftables') return renderNftables(plan);
  if (opts.format === 'systemd') return renderSystemdDropIn(plan);
  return renderNetworkPolicy(plan, { namespace: opts.namespace, podLabels: AGENT_POD_LABELS });
}

async function writeRules(file: string, text: string, force: boolean | undefined): Promise<void> {
  try {
    await writeFile(file, text, { flag: force ? 'w' : 'wx', mode: 0o644 });
  } catch (e) {
    throw fsError(e, file, 'write the egress rules to');
  }
}

export function registerHardenCommands(program: Command): void {
  const harden = program
    .command('harden')
    .description('device hardening: egress rules from agent.yaml, and the preflight for them and secure boot');

  harden
    .command('egress')
    .description("generate the device's egress rules from the egress section of agent.yaml")
    .requiredOption('--config <file>', 'agent.yaml with an egress section (docs/formats.md)')
    .addOption(new Option('--format <format>', 'what to generate').choices(FORMATS).makeOptionMandatory())
    .option('-o, --out <file>', 'write the rules to this file instead of stdout')
    .option('--force', 'overwrite the output file')
    .option('--namespace <name>', 'namespace of the agent pods (networkpolicy)', 'edgeguard')
    .action(async (opts: EgressOpts, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const config = await loadAgentConfig(opts.config);
      if (!config.egress)
        throw new EdgeguardError(
          'EG_CONFIG',
          `${opts.config} has no egress section; describe what the device talks to there.`,
        );
      const uploadServer = config.upload && 'server' in config.upload ? config.upload.server : undefined;
      const plan = await planEgress({ egress: config.egress, uploadServer });
      const text = render(plan, opts);
      if (opts.out) await writeRules(opts.out, text, opts.force);
      if (!opts.out && !out.opts.json) {
        process.stdout.write(text);
        return;
      }
      out.result(
        { ok: true, format: opts.format, ...(opts.out ? { out: opts.out } : { text }), rules: plan.rules },
        `wrote ${opts.format} egress rules (${plan.rules.length} destination rules) to ${opts.out}`,
      );
    });

  harden
    .command('check')
    .description(
      'preflight: nft installed, the ipset modules K3s needs to enforce NetworkPolicy, K3s policy controller on, UEFI secure boot on; exits 9 (EG_PREFLIGHT) on any warning',
    )
    .option('--root <dir>', 'filesystem root to inspect (a mounted device image)', '/')
    .action(async (opts: { root: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const report = await checkHardening(opts.root);
      out.result(
        report,
        report.findings.map((f) => `${f.status === 'ok' ? 'ok  ' : 'WARN'} ${f.check}: ${f.message}`),
      );
      if (!report.ok) process.exitCode = ERROR_EXIT_CODES.EG_PREFLIGHT;
    });
}
