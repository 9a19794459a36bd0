/**
 * Fleet operations over mutual TLS: `edgeguard device list|show|approve|revoke` (admin client
 * certificate) and `edgeguard agent enroll|renew` (device side). The `device` and `agent` command
 * groups are shared with other files: found on the program, or created when absent.
 *
 * Connection settings come from flags, else the environment (EDGEGUARD_SERVER, EDGEGUARD_CERT,
 * EDGEGUARD_KEY, EDGEGUARD_CA), else a YAML file (--config or EDGEGUARD_CONFIG):
 *   server: https://cp.example:8443
 *   cert: /etc/edgeguard/admin.crt
 *   key: /etc/edgeguard/admin.key
 *   ca: /etc/edgeguard/fleet-ca.pem
 */
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ERROR_EXIT_CODES, EdgeguardError, fsError } from '../../errors/index.ts';
import { FleetClient, enrollDevice, renewIfDue, type AttestationStatus, type DeviceView } from '../../fleet/index.ts';
import { Output, globalOptions } from '../output.ts';

function group(program: Command, name: string, description: string): Command {
  return program.commands.find((c) => c.name() === name) ?? program.command(name).description(description);
}

function readFileText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw fsError(e, path, `read ${what}`);
  }
}

const ConfigFile = z.strictObject({
  server: z.string().optional(),
  cert: z.string().optional(),
  key: z.string().optional(),
  ca: z.string().optional(),
});

export interface ConnOpts {
  server?: string;
  cert?: string;
  key?: string;
  ca?: string;
  config?: string;
}

export function adminClient(o: ConnOpts): FleetClient {
  let file: z.infer<typeof ConfigFile> = {};
  const configPath = o.config ?? process.env.EDGEGUARD_CONFIG;
  if (configPath) {
    const r = ConfigFile.safeParse(parseYaml(readFileText(configPath, 'the config file')));
    if (!r.success)
      throw new EdgeguardError(
        'EG_CONFIG',
        `${configPath} is not a valid edgeguard client config (${r.error.issues[0]?.path.join('.') || 'root'}: ${r.error.issues[0]?.message}).`,
      );
    file = r.data;
  }
  const pick = (flag: string | undefined, env: string, fromFile: string | undefined, what: string) => {
    const v = flag ?? process.env[env] ?? fromFile;
    if (!v)
      throw new EdgeguardError(
        'EG_USAGE',
        `missing ${what}: pass --${what}, set ${env}, or put "${what}:" in a --config file.`,
      );
    return v;
  };
  const server = pick(o.server, 'EDGEGUARD_SERVER', file.server, 'server');
  const cert = pick(o.cert, 'EDGEGUARD_CERT', file.cert, 'cert');
  const key = pick(o.key, 'EDGEGUARD_KEY', file.key, 'key');
  const ca = pick(o.ca, 'EDGEGUARD_CA', file.ca, 'ca');
  return new FleetClient({
    server,
    ca: readFileText(ca, 'the fleet CA'),
    cert: readFileText(cert, 'the client certificate'),
    key: readFileText(key, 'the client key'),
  });
}

export function withConnection(cmd: Command): Command {
  return cmd
    .option('--server <url>', 'control plane URL, https://HOST:PORT (or $EDGEGUARD_SERVER)')
    .option('--cert <file>', 'admin client certificate, e.g. admin.crt (or $EDGEGUARD_CERT)')
    .option('--key <file>', 'admin client key, e.g. admin.key (or $EDGEGUARD_KEY)')
    .option('--ca <file>', 'fleet CA to pin, DIR/fleet-ca.pem (or $EDGEGUARD_CA)')
    .option('--config <file>', 'YAML file with server, cert, key, ca (or $EDGEGUARD_CONFIG)');
}

function deviceLine(d: DeviceView): string {
  const kp = d.softwareBound ? 'software (NOT hardware-bound)' : d.keyProvider;
  return `${d.id}  ${d.status.padEnd(8)}  ${kp.padEnd(29)}  ${d.label ?? '-'}  enrolled ${d.createdAt}`;
}

function attestationLines(a: AttestationStatus): string[] {
  const v = a.lastVerdict;
  return [
    `attestation:  ${a.state}${a.trusted && a.trustedUntil ? ` until ${a.trustedUntil}` : ''}`,
    ...(v ? [`last verdict: ${v.pass ? 'pass' : 'FAIL'} at ${v.receivedAt}`] : []),
    ...a.reasons.map((r) => `  ${r.code}: ${r.detail}`),
  ];
}

export async function run<T>(client: FleetClient, fn: (c: FleetClient) => Promise<T>): Promise<T> {
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

export function registerFleetCommands(program: Command): void {
  const device = group(program, 'device', 'device key store and fleet management');

  withConnection(device.command('list').description('list enrolled devices (admin certificate)'))
    .addOption(
      new Option('--status <status>', 'only devices in this state').choices(['pending', 'approved', 'revoked']),
    )
    .action(async (opts: ConnOpts & { status?: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const q = opts.status ? `?status=${opts.status}` : '';
      const r = await run(adminClient(opts), (c) => c.call<{ devices: DeviceView[] }>('GET', `/v1/devices${q}`));
      const devices = r.body.devices;
      out.result(
        { ok: true, devices },
        devices.length === 0
          ? ['no devices']
          : ['ID                    STATUS    KEY PROVIDER                   LABEL', ...devices.map(deviceLine)],
      );
    });

  withConnection(
    device.command('show').description('show one device (admin certificate)').argument('<id>', 'device id (dev-...)'),
  ).action(async (id: string, opts: ConnOpts, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    const { d, attestation } = await run(adminClient(opts), async (c) => ({
      d: (await c.call<DeviceView>('GET', `/v1/devices/${encodeURIComponent(id)}`)).body,
      attestation: (await c.call<AttestationStatus>('GET', `/v1/devices/${encodeURIComponent(id)}/attestation`)).body,
    }));
    out.result({ ok: true, device: d, attestation }, [
      `${d.id}: ${d.status}`,
      `key provider: ${d.keyProvider}${d.softwareBound ? ' (software-bound: NOT hardware-bound)' : ''}`,
      `EK SHA-256:   ${d.ekPubSha256}${d.ekCertificate ? ' (EK certificate verified)' : ''}`,
      ...(d.akName ? [`AK name:      ${d.akName}`] : []),
      `label:        ${d.label ?? '-'}`,
      `enrolled:     ${d.createdAt}`,
      `approved:     ${d.approvedAt ? `${d.approvedAt} by ${d.approvedBy}` : '-'}`,
      `revoked:      ${d.revokedAt ?? '-'}`,
      `last seen:    ${d.lastSeenAt ?? '-'}`,
      ...attestationLines(attestation),
    ]);
  });

  withConnection(
    device
      .command('attest-status')
      .description('the attestation gate for one device: exits 0 only with a fresh passing verdict (admin certificate)')
      .argument('<id>', 'device id (dev-...)'),
  ).action(async (id: string, opts: ConnOpts, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    const r = await run(adminClient(opts), (c) =>
      c.call<AttestationStatus>('GET', `/v1/devices/${encodeURIComponent(id)}/attestation`),
    );
    out.result({ ok: r.body.trusted, attestation: r.body }, attestationLines(r.body));
    // One document on stdout either way; an untrusted device exits with EG_ATTEST_REFUSED's status (9).
    if (!r.body.trusted) {
      const why = `device ${id} is not trusted (reasons above): fix its boot, or bring it back online so that its agent pushes fresh evidence.`;
      if (!out.opts.json) process.stderr.write(`EG_ATTEST_REFUSED: ${why}\n`);
      process.exitCode = ERROR_EXIT_CODES.EG_ATTEST_REFUSED;
    }
  });

  withConnection(
    device
      .command('approve')
      .description('approve a pending device; its certificate is issued (admin certificate)')
      .argument('<id>', 'device id'),
  ).action(async (id: string, opts: ConnOpts, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    const r = await run(adminClient(opts), (c) =>
      c.call<DeviceView>('POST', `/v1/devices/${encodeURIComponent(id)}/approve`),
    );
    out.result(
      { ok: true, device: r.body },
      `approved ${r.body.id} (${r.body.keyProvider}${r.body.softwareBound ? ', software-bound' : ''})`,
    );
  });

  withConnection(
    device
      .command('revoke')
      .description('revoke a device and its certificates (admin certificate)')
      .argument('<id>', 'device id'),
  )
    .addOption(
      new Option('--reason <reason>', 'CRL reason')
        .choices(['unspecified', 'keyCompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation'])
        .default('cessationOfOperation'),
    )
    .action(async (id: string, opts: ConnOpts & { reason: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const r = await run(adminClient(opts), (c) =>
        c.call<{ device: DeviceView; revokedSerials: string[] }>(
          'POST',
          `/v1/devices/${encodeURIComponent(id)}/revoke`,
          { reason: opts.reason },
        ),
      );
      out.result(
        { ok: true, device: r.body.device, revokedSerials: r.body.revokedSerials },
        `revoked ${id}; certificates ${r.body.revokedSerials.join(', ') || '(none)'} are refused from now on`,
      );
    });

  withConnection(
    device
      .command('remove')
      .description('remove a revoked device so that its TPM can enroll again (admin certificate)')
      .argument('<id>', 'device id'),
  ).action(async (id: string, opts: ConnOpts, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    await run(adminClient(opts), (c) => c.call('DELETE', `/v1/devices/${encodeURIComponent(id)}`));
    out.result({ ok: true, removed: id }, `removed ${id}; its certificates stay revoked`);
  });

  const admin = group(program, 'admin', 'fleet administration');
  withConnection(
    admin
      .command('revoke-cert')
      .description('revoke one certificate by serial, e.g. a lost admin certificate (admin certificate)')
      .argument('<serial>', 'certificate serial, hex'),
  )
    .addOption(
      new Option('--reason <reason>', 'CRL reason')
        .choices(['unspecified', 'keyCompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation'])
        .default('keyCompromise'),
    )
    .action(async (serial: string, opts: ConnOpts & { reason: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const r = await run(adminClient(opts), (c) =>
        c.call<{ serial: string; role: string; revokedAt: string }>(
          'POST',
          `/v1/certificates/${encodeURIComponent(serial)}/revoke`,
          { reason: opts.reason },
        ),
      );
      out.result({ ok: true, ...r.body }, `revoked ${r.body.role} certificate ${r.body.serial} at ${r.body.revokedAt}`);
    });

  const agent = group(program, 'agent', 'the device agent');
  agent
    .command('enroll')
    .description('enroll this device with the control plane (TPM-proven), wait for approval, store the certificate')
    .requiredOption('--device <dir>', 'device directory from `edgeguard device init`')
    .requiredOption('--server <url>', 'control plane URL, https://HOST:PORT')
    .requiredOption('--ca <file>', "the fleet CA to pin (fleet-ca.pem from the server's data directory)")
    .option('--label <text>', 'a label operators see in `device list`')
    .option('--tpm <tcti>', 'override the TCTI recorded in device.json')
    .option('--wait <seconds>', 'how long to wait for approval', '600')
    .action(
      async (
        opts: { device: string; server: string; ca: string; label?: string; tpm?: string; wait: string },
        cmd: Command,
      ) => {
        const out = new Output(globalOptions(cmd));
        const wait = Number(opts.wait);
        if (!Number.isFinite(wait) || wait < 0)
          throw new EdgeguardError('EG_USAGE', '--wait must be a number of seconds.');
        const r = await enrollDevice({
          deviceDir: opts.device,
          server: opts.server,
          caPem: readFileText(opts.ca, 'the fleet CA'),
          ...(opts.label ? { label: opts.label } : {}),
          ...(opts.tpm ? { tcti: opts.tpm } : {}),
          poll: { timeoutMs: wait * 1000 },
          onProgress: (m) => out.info(m),
        });
        out.result({ ok: true, ...r }, [
          `enrolled ${r.deviceId} (${r.keyProvider}${r.keyProvider === 'software' ? ', software-bound' : ''})`,
          `certificate: ${r.certificatePath} (valid until ${r.notAfter}; renewed at two thirds of its lifetime)`,
        ]);
      },
    );

  agent
    .command('renew')
    .description('renew the device certificate if two thirds of its lifetime have passed')
    .requiredOption('--device <dir>', 'enrolled device directory')
    .option('--force', 'renew now')
    .action(async (opts: { device: string; force?: boolean }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const r = await renewIfDue(opts.device, { force: Boolean(opts.force) });
      out.result(
        { ok: true, ...r },
        r.renewed ? `renewed; valid until ${r.notAfter}` : `not due yet; valid until ${r.notAfter}`,
      );
    });
}
