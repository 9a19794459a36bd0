/**
 * `edgeguard checklist --device DIR --config agent.yaml`: the ten edge-AI items on this device,
 * with evidence; text (coloured on a TTY), --json (kube-bench-shaped), --junit or --sarif.
 * `--exit-code N` makes any FAIL exit N, for CI; `--sign` prints the JSON report in a DSSE envelope
 * signed by the device certificate's key (src/checklist/signed-report.ts), to upload later.
 */
import { Command, InvalidArgumentError } from 'commander';
import { writeFile } from 'node:fs/promises';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { loadAgentConfig, type AgentConfig } from '../../agent/index.ts';
import {
  buildReport,
  formatChecklistJunit,
  formatChecklistSarif,
  formatChecklistText,
  runChecklist,
  signReport,
  type ChecklistReport,
} from '../../checklist/index.ts';
import { publicKeyId, readPrivateSigningKey, signingAlgorithmOf, type SigningKeyPair } from '../../crypto/index.ts';
import { EdgeguardError, fsError } from '../../errors/index.ts';
import { loadDeviceCredential } from '../../fleet/index.ts';
import { findExecutable } from '../../harden/index.ts';
import { readDeviceFile } from '../../keystore/index.ts';
import { globalOptions } from '../output.ts';

interface ChecklistOpts {
  device: string;
  config: string;
  root: string;
  junit?: boolean;
  sarif?: boolean;
  exitCode?: number;
  out?: string;
  sign?: boolean;
}

function parseExitCode(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 255) throw new InvalidArgumentError('an exit status from 1 to 255');
  return n;
}

async function deviceSummary(dir: string): Promise<ChecklistReport['device']> {
  const device = await readDeviceFile(dir).catch(() => undefined);
  return device ? { bindingKey: device.bindingKey, posture: device.posture } : {};
}

/** The device certificate's key from agent.yaml's upload section (an enrolled device: unwrapped by its key store). */
async function deviceSigningKey(upload: AgentConfig['upload']): Promise<SigningKeyPair> {
  if (!upload)
    throw new EdgeguardError('EG_CONFIG', 'signing needs the device certificate key: configure upload in agent.yaml.');
  if ('key' in upload) return readPrivateSigningKey(upload.key);
  const privateKey = createPrivateKey((await loadDeviceCredential(upload.device)).keyPem);
  const publicKey = createPublicKey(privateKey);
  return { algorithm: signingAlgorithmOf(privateKey), privateKey, publicKey, keyId: publicKeyId(publicKey) };
}

function render(report: ChecklistReport, opts: ChecklistOpts, json: boolean): string {
  if (opts.junit) return formatChecklistJunit(report);
  if (opts.sarif) return JSON.stringify(formatChecklistSarif(report), null, 2) + '\n';
  if (json) return JSON.stringify(report, null, 2) + '\n';
  return formatChecklistText(report, { colour: !opts.out && Boolean(process.stdout.isTTY) });
}

export function registerChecklistCommand(program: Command): void {
  program
    .command('checklist')
    .description('run the ten edge-AI checks (EG-01..EG-10) on this device, with evidence')
    .requiredOption('--device <dir>', 'the device directory (edgeguard device init)')
    .requiredOption('--config <file>', "the agent's agent.yaml")
    .option('--root <dir>', 'filesystem root holding sys/firmware/efi (a mounted device image)', '/')
    .option('--junit', 'JUnit XML instead of text')
    .option('--sarif', 'SARIF 2.1.0 instead of text')
    .option('--exit-code <n>', 'exit with this status when any item fails', parseExitCode)
    .option('--sign', "print the JSON report signed by the device certificate's key (a DSSE envelope)")
    .option('-o, --out <file>', 'write the report to this file instead of stdout')
    .action(async (opts: ChecklistOpts, cmd: Command) => {
      const { json } = globalOptions(cmd);
      if ([json, opts.junit, opts.sarif, opts.sign].filter(Boolean).length > 1)
        throw new EdgeguardError('EG_USAGE', 'choose one of --json, --junit, --sarif and --sign.');
      const config = await loadAgentConfig(opts.config);
      const nft = await findExecutable('/', 'nft');
      const results = await runChecklist({
        deviceDir: opts.device,
        configPath: opts.config,
        config,
        root: opts.root,
        nft,
      });
      const report = buildReport(results, await deviceSummary(opts.device));
      const text = opts.sign
        ? JSON.stringify(signReport(report, await deviceSigningKey(config.upload)), null, 2) + '\n'
        : render(report, opts, json);
      if (opts.out)
        await writeFile(opts.out, text).catch((e: unknown) =>
          Promise.reject(fsError(e, opts.out!, 'write the report to')),
        );
      else process.stdout.write(text);
      if (opts.exitCode !== undefined && report.totals.FAIL > 0) process.exitCode = opts.exitCode;
    });
}
