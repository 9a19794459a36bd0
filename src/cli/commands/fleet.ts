/**
 * Fleet operations over mutual TLS: `edgeguard device list|show|approve|revoke` (admin client
 * certificate) and `edgeguard agent enroll|renew` (device side). The `device` and `agent` command
 * groups are shared with other files: found on the program, or created when absent.
 *
 * Connection settings: the shared options of ../connection.ts (flag, environment, admin.yaml).
 */
import { Command, Option } from 'commander';
import { ERROR_EXIT_CODES, EdgeguardError } from '../../errors/index.ts';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  AttestationStatus,
  CertificateRevokeAnswer,
  DEVICE_STATUSES,
  DeviceListAnswer,
  DeviceRevokeAnswer,
  DeviceViewAnswer,
  FLEET_FILES,
  FLEET_SUBDIR,
  FleetClient,
  enrollDevice,
  renewIfDue,
  retireEnrollment,
  type DeviceView,
} from '../../fleet/index.ts';
import { Output, globalOptions } from '../output.ts';
import { readPemFile, resolveConnection, withConnection, type ConnectionOptions } from '../connection.ts';

function group(program: Command, name: string, description: string): Command {
  return program.commands.find((c) => c.name() === name) ?? program.command(name).description(description);
}

/** An mTLS client for the admin API, from the shared connection options (../connection.ts). */
export function adminClient(o: ConnectionOptions): FleetClient {
  const c = resolveConnection(o, 'required');
  return new FleetClient({ server: c.server, ca: c.ca, cert: c.cert!, key: c.key! });
}

function deviceLine(d: DeviceView): string {
  const kp = d.softwareBound ? 'software (NOT hardware-bound)' : d.keyProvider;
  return `${d.id}  ${d.status.padEnd(8)}  ${kp.padEnd(29)}  ${d.label ?? '-'}  enrolled ${d.createdAt}`;
}

/** What the verdict recorded as having happened since the last accepted quote (a reboot). */
function eventsNote(events: Array<{ code: string }> = []): string {
  return events.length > 0 ? ` (${events.map((e) => e.code).join(', ')})` : '';
}

function attestationLines(a: AttestationStatus): string[] {
  const v = a.lastVerdict;
  return [
    `attestation:  ${a.state}${a.trusted && a.trustedUntil ? ` until ${a.trustedUntil}` : ''}`,
    ...(v ? [`last verdict: ${v.pass ? 'pass' : 'FAIL'} at ${v.receivedAt}${eventsNote(v.events)}`] : []),
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
    .addOption(new Option('--status <status>', 'only devices in this state').choices([...DEVICE_STATUSES]))
    .action(async (opts: ConnectionOptions & { status?: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const q = opts.status ? `?status=${opts.status}` : '';
      const { devices } = await run(adminClient(opts), (c) =>
        c.callChecked(DeviceListAnswer, 'device list', 'GET', `/v1/devices${q}`),
      );
      out.result(
        { ok: true, devices },
        devices.length === 0
          ? ['no devices']
          : ['ID                    STATUS    KEY PROVIDER                   LABEL', ...devices.map(deviceLine)],
      );
    });

  withConnection(
    device.command('show').description('show one device (admin certificate)').argument('<id>', 'device id (dev-...)'),
  ).action(async (id: string, opts: ConnectionOptions, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    const { d, attestation } = await run(adminClient(opts), async (c) => ({
      d: await c.callChecked(DeviceViewAnswer, 'device', 'GET', `/v1/devices/${encodeURIComponent(id)}`),
      // A control plane without the attestation plugin has no such route: say so, do not fail.
      attestation: await c
        .callChecked(
          AttestationStatus,
          'attestation status',
          'GET',
          `/v1/devices/${encodeURIComponent(id)}/attestation`,
        )
        .catch((e: unknown) => {
          if (e instanceof EdgeguardError && e.code === 'EG_NOT_FOUND') return undefined;
          throw e;
        }),
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
      ...(d.tamperedAt
        ? [`tampered:     ${d.tamperedAt} (the device reported physical tampering; re-provision it)`]
        : []),
      `last seen:    ${d.lastSeenAt ?? '-'}`,
      ...(attestation ? attestationLines(attestation) : ['attestation:  not offered by this control plane']),
    ]);
  });

  withConnection(
    device
      .command('attest-status')
      .description('the attestation gate for one device: exits 0 only with a fresh passing verdict (admin certificate)')
      .argument('<id>', 'device id (dev-...)'),
  ).action(async (id: string, opts: ConnectionOptions, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    const status = await run(adminClient(opts), (c) =>
      c.callChecked(
        AttestationStatus,
        'attestation status',
        'GET',
        `/v1/devices/${encodeURIComponent(id)}/attestation`,
      ),
    );
    out.result({ ok: status.trusted, attestation: status }, attestationLines(status));
    // One document on stdout either way; an untrusted device exits with EG_ATTEST_REFUSED's status (9).
    if (!status.trusted) {
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
  ).action(async (id: string, opts: ConnectionOptions, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    const d = await run(adminClient(opts), (c) =>
      c.callChecked(DeviceViewAnswer, 'device approval', 'POST', `/v1/devices/${encodeURIComponent(id)}/approve`),
    );
    out.result(
      { ok: true, device: d },
      `approved ${d.id} (${d.keyProvider}${d.softwareBound ? ', software-bound' : ''})`,
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
    .action(async (id: string, opts: ConnectionOptions & { reason: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const r = await run(adminClient(opts), (c) =>
        c.callChecked(DeviceRevokeAnswer, 'device revocation', 'POST', `/v1/devices/${encodeURIComponent(id)}/revoke`, {
          reason: opts.reason,
        }),
      );
      out.result(
        { ok: true, device: r.device, revokedSerials: r.revokedSerials },
        `revoked ${id}; certificates ${r.revokedSerials.join(', ') || '(none)'} are refused from now on`,
      );
    });

  withConnection(
    device
      .command('remove')
      .description('remove a revoked or tampered device so that its TPM can enroll again (admin certificate)')
      .argument('<id>', 'device id'),
  ).action(async (id: string, opts: ConnectionOptions, cmd: Command) => {
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
    .action(async (serial: string, opts: ConnectionOptions & { reason: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const r = await run(adminClient(opts), (c) =>
        c.callChecked(
          CertificateRevokeAnswer,
          'certificate revocation',
          'POST',
          `/v1/certificates/${encodeURIComponent(serial)}/revoke`,
          { reason: opts.reason },
        ),
      );
      out.result({ ok: true, ...r }, `revoked ${r.role} certificate ${r.serial} at ${r.revokedAt}`);
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
    .option('--config <agent.yaml>', "connect only where its egress: section allows (the agent's allowlist)")
    .option('--reenroll', 'enroll an enrolled device again: forward its journal, move DIR/fleet aside')
    .option('--archive', 'with --reenroll: move the journal aside even if entries could not be forwarded')
    .action(
      async (
        opts: {
          device: string;
          server: string;
          ca: string;
          label?: string;
          tpm?: string;
          wait: string;
          config?: string;
          reenroll?: boolean;
          archive?: boolean;
        },
        cmd: Command,
      ) => {
        const out = new Output(globalOptions(cmd));
        const dialer = opts.config ? await enrollmentDialer(opts.config, opts.server, out) : undefined;
        const wait = Number(opts.wait);
        if (!Number.isFinite(wait) || wait < 0)
          throw new EdgeguardError('EG_USAGE', '--wait must be a number of seconds.');
        if (opts.reenroll && existsSync(join(opts.device, FLEET_SUBDIR, FLEET_FILES.certificate))) {
          const retired = await retireEnrollment(opts.device, { archive: opts.archive === true });
          out.info(
            `previous enrollment moved to ${retired.archivedTo}${retired.unforwarded > 0 ? ` with ${retired.unforwarded} journal entries the control plane has not logged` : ''}`,
          );
        }
        const r = await enrollDevice({
          deviceDir: opts.device,
          server: opts.server,
          caPem: readPemFile(opts.ca, 'the fleet CA'),
          ...(opts.label ? { label: opts.label } : {}),
          ...(opts.tpm ? { tcti: opts.tpm } : {}),
          poll: { timeoutMs: wait * 1000 },
          onProgress: (m) => out.info(m),
          dialer,
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

/** The agent's egress allowlist for `agent enroll --config`. */
async function enrollmentDialer(configPath: string, server: string, out: Output) {
  // Loaded only here: the agent module brings ONNX Runtime, which no other command of this module needs.
  const { agentEgressDialer, loadAgentConfig } = await import('../../agent/index.ts');
  return agentEgressDialer(await loadAgentConfig(configPath), server, (d) =>
    out.warn(`egress refused: ${d.host} port ${d.port} (${d.reason})`),
  );
}
