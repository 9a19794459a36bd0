/**
 * `edgeguard checklist --device DIR --config agent.yaml`: the ten edge-AI items on this device,
 * with evidence; text (coloured on a TTY), --json (kube-bench-shaped), --junit or --sarif.
 * `--exit-code N` makes any FAIL exit N, for CI; `--sign` prints the JSON report in a DSSE envelope
 * signed by the device certificate's key (src/checklist/signed-report.ts); `--upload` sends that
 * envelope to the control plane, which checks it, keeps it and logs its digest.
 * `edgeguard checklist --fleet` (admin) lists every device's latest score and failing items.
 * With attestation on in agent.yaml, EG-07 asks the control plane for a verdict on a quote made
 * now, unless `--offline`.
 */
import { Command, InvalidArgumentError } from 'commander';
import { writeFile } from 'node:fs/promises';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { AgentIdentity, agentAttestationReporter, loadAgentConfig, type AgentConfig } from '../../agent/index.ts';
import {
  buildReport,
  formatChecklistJunit,
  formatChecklistSarif,
  formatChecklistText,
  runChecklist,
  signReport,
  type ChecklistReport,
  type ChecklistTarget,
} from '../../checklist/index.ts';
import { publicKeyId, readPrivateSigningKey, signingAlgorithmOf, type SigningKeyPair } from '../../crypto/index.ts';
import { EdgeguardError, fsError } from '../../errors/index.ts';
import {
  fetchFleetChecklist,
  loadDeviceCredential,
  uploadChecklistReport,
  type FleetChecklist,
} from '../../fleet/index.ts';
import { findExecutable } from '../../harden/index.ts';
import { readDeviceFile } from '../../keystore/index.ts';
import { globalOptions, Output } from '../output.ts';
import { adminClient } from './fleet.ts';

interface ChecklistOpts {
  device?: string;
  config?: string;
  root: string;
  junit?: boolean;
  sarif?: boolean;
  exitCode?: number;
  out?: string;
  sign?: boolean;
  upload?: boolean;
  offline?: boolean;
  fleet?: boolean;
  server?: string;
  ca?: string;
  clientCert?: string;
  clientKey?: string;
  adminConfig?: string;
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

/** One attestation round with the agent's own reporter (its AK, event log and device identity). */
function attestationProbe(config: AgentConfig, identity: AgentIdentity): ChecklistTarget['attest'] {
  const deviceDir =
    config.attestation.device ?? (config.upload && 'device' in config.upload ? config.upload.device : undefined);
  if (!deviceDir) return undefined;
  return async () => {
    const reporter = await agentAttestationReporter(
      { deviceDir, eventLogPath: config.attestation.eventLog, intervalMs: config.attestation.intervalMs },
      identity,
    );
    return reporter.pushNow();
  };
}

function fleetText(f: FleetChecklist): string {
  const lines = f.devices.map((d) => {
    const name = `${d.deviceId}${d.label ? ` (${d.label})` : ''}`;
    if (!d.report) return `${name.padEnd(40)} ${d.status.padEnd(9)} no report`;
    const failing = d.report.failing.length ? `failing ${d.report.failing.join(' ')}` : 'nothing failing';
    return `${name.padEnd(40)} ${d.status.padEnd(9)} score ${String(d.report.score).padStart(3)}  ${failing}  (${d.report.generatedAt})`;
  });
  const reported = f.devices.filter((d) => d.report).length;
  return [...lines, `${f.devices.length} devices, ${reported} with a report`].join('\n') + '\n';
}

async function runFleet(opts: ChecklistOpts, cmd: Command): Promise<void> {
  const out = new Output(globalOptions(cmd));
  const client = adminClient({
    ...(opts.server ? { server: opts.server } : {}),
    ...(opts.ca ? { ca: opts.ca } : {}),
    ...(opts.clientCert ? { clientCert: opts.clientCert } : {}),
    ...(opts.clientKey ? { clientKey: opts.clientKey } : {}),
    ...(opts.adminConfig ? { config: opts.adminConfig } : {}),
  });
  try {
    const fleet = await fetchFleetChecklist(client);
    out.result(fleet, fleetText(fleet).trimEnd());
    const failing = fleet.devices.some((d) => d.report && d.report.failing.length > 0);
    if (opts.exitCode !== undefined && failing) process.exitCode = opts.exitCode;
  } finally {
    client.close();
  }
}

async function runOnDevice(opts: ChecklistOpts, cmd: Command): Promise<void> {
  const { json } = globalOptions(cmd);
  if (!opts.device || !opts.config)
    throw new EdgeguardError('EG_USAGE', 'give --device DIR and --config agent.yaml (or --fleet for the whole fleet).');
  // --upload prints its own answer (text, or JSON with --json), so it combines with --json only.
  if ([opts.upload ? false : json, opts.junit, opts.sarif, opts.sign, opts.upload].filter(Boolean).length > 1)
    throw new EdgeguardError('EG_USAGE', 'choose one of --json, --junit, --sarif, --sign and --upload.');
  const config = await loadAgentConfig(opts.config);
  const needsServer = Boolean(opts.upload) || (config.attestation.enabled && !opts.offline);
  const identity = needsServer && config.upload ? await AgentIdentity.fromConfig(config.upload) : undefined;
  try {
    const attest = identity && config.attestation.enabled ? attestationProbe(config, identity) : undefined;
    const results = await runChecklist({
      deviceDir: opts.device,
      configPath: opts.config,
      config,
      root: opts.root,
      nft: await findExecutable('/', 'nft'),
      ...(attest ? { attest } : {}),
    });
    const report = buildReport(results, await deviceSummary(opts.device));
    if (opts.upload) {
      if (!identity)
        throw new EdgeguardError('EG_CONFIG', 'uploading needs the device identity: configure upload in agent.yaml.');
      const answer = await uploadChecklistReport(
        identity.client(),
        signReport(report, await deviceSigningKey(config.upload)),
      );
      new Output(globalOptions(cmd)).result(
        { ok: true, ...answer },
        `uploaded: score ${answer.score}, ${answer.failing.length ? `failing ${answer.failing.join(' ')}` : 'nothing failing'}; logged as sha256 ${answer.envelopeSha256}`,
      );
    } else {
      const text = opts.sign
        ? JSON.stringify(signReport(report, await deviceSigningKey(config.upload)), null, 2) + '\n'
        : render(report, opts, json);
      if (opts.out)
        await writeFile(opts.out, text).catch((e: unknown) =>
          Promise.reject(fsError(e, opts.out!, 'write the report to')),
        );
      else process.stdout.write(text);
    }
    if (opts.exitCode !== undefined && report.totals.FAIL > 0) process.exitCode = opts.exitCode;
  } finally {
    identity?.close();
  }
}

export function registerChecklistCommand(program: Command): void {
  program
    .command('checklist')
    .description('run the ten edge-AI checks (EG-01..EG-10) on this device, with evidence; or list the fleet')
    .option('--device <dir>', 'the device directory (edgeguard device init)')
    .option('--config <file>', "the agent's agent.yaml")
    .option('--root <dir>', 'filesystem root holding sys/firmware/efi (a mounted device image)', '/')
    .option('--junit', 'JUnit XML instead of text')
    .option('--sarif', 'SARIF 2.1.0 instead of text')
    .option('--exit-code <n>', 'exit with this status when any item fails (with --fleet: on any device)', parseExitCode)
    .option('--sign', "print the JSON report signed by the device certificate's key (a DSSE envelope)")
    .option('--upload', 'sign the report with the device key and send it to the control plane')
    .option('--offline', 'do not contact the control plane (EG-07 then cannot ask for a verdict)')
    .option('-o, --out <file>', 'write the report to this file instead of stdout')
    .option('--fleet', "every device's latest uploaded score and failing items (admin certificate)")
    .option('--server <url>', 'with --fleet: control plane URL (or $EDGEGUARD_SERVER)')
    .option('--ca <file>', 'with --fleet: the fleet CA (or $EDGEGUARD_CA)')
    .option('--client-cert <file>', 'with --fleet: admin client certificate (or $EDGEGUARD_CLIENT_CERT)')
    .option('--client-key <file>', 'with --fleet: its key (or $EDGEGUARD_CLIENT_KEY)')
    .option('--admin-config <file>', 'with --fleet: admin.yaml with server, ca, cert, key (or $EDGEGUARD_CONFIG)')
    .action(async (opts: ChecklistOpts, cmd: Command) => {
      if (opts.fleet) return runFleet(opts, cmd);
      return runOnDevice(opts, cmd);
    });
}
