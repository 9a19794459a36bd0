/**
 * `edgeguard release assign|status|director-keys`: the control plane's release director, over the
 * admin API (src/server/routes/director.ts).
 *
 *   release assign NAME@VERSION --device ID | --group G [--canary 10%] [--max-failures N]
 *                  [--content-key FILE]         (the key is needed the first time a release is assigned)
 *   release status [--release NAME]              per device: assigned, installed, last report, failures
 *   release director-keys [-o FILE]              the director's public key (PEM), to pin on devices
 */
import { writeFile } from 'node:fs/promises';
import { Command, InvalidArgumentError } from 'commander';
import { b64url, readContentKeyFile, wipe } from '../../crypto/index.ts';
import { EdgeguardError, fsError } from '../../errors/index.ts';
import {
  Assignment,
  DirectorKeysAnswer,
  RELEASE_NAME_RE,
  ReleaseStatusResponse,
  type DeviceReleaseStatus,
} from '../../fleet/index.ts';
import { parseNonNegativeInt } from '../args.ts';
import { withConnection, type ConnectionOptions } from '../connection.ts';
import { Output, globalOptions } from '../output.ts';
import { adminClient, run } from './fleet.ts';

function parseRelease(value: string): { release: string; version: number } {
  const m = /^(.+)@(\d+)$/.exec(value);
  if (!m || !RELEASE_NAME_RE.test(m[1]!) || !Number.isSafeInteger(Number(m[2])))
    throw new EdgeguardError('EG_USAGE', `"${value}" is not NAME@VERSION (e.g. mnist@3).`);
  return { release: m[1]!, version: Number(m[2]) };
}

function parsePercent(value: string): number {
  const m = /^(\d{1,3})%?$/.exec(value.trim());
  const n = m ? Number(m[1]) : NaN;
  if (!(n >= 1 && n <= 100)) throw new InvalidArgumentError('expected a share such as 10% (1 to 100).');
  return n;
}

interface AssignOptions extends ConnectionOptions {
  device?: string;
  group?: string;
  canary?: number;
  maxFailures?: number;
  contentKey?: string;
}

function assignmentLines(a: Assignment): string[] {
  const who = `${a.scope} ${a.target}`;
  return [
    `${a.release}@${a.version} assigned to ${who} (${a.state}, assignment ${a.id})`,
    ...(a.canaryDevices
      ? [`canary ${a.canaryPercent}%: ${a.canaryDevices.join(', ')}; halts after more than ${a.maxFailures} failures`]
      : []),
  ];
}

function statusLine(d: DeviceReleaseStatus): string {
  const assigned = d.assigned ? `${d.assigned.version}${d.assigned.state === 'halted' ? ' (HALTED)' : ''}` : '-';
  const last = d.lastReport ? `${d.lastReport.status} v${d.lastReport.version} at ${d.lastReport.at}` : '-';
  return `${d.deviceId}  ${d.release.padEnd(12)} assigned ${assigned.padEnd(12)} installed ${String(d.installed ?? '-').padEnd(4)} failures ${d.failures}  last ${last}`;
}

export function registerDirectorCommands(release: Command): void {
  withConnection(
    release
      .command('assign')
      .description(
        "assign a published release to a device or a group; the control plane's director then names it to each device, its content key wrapped to the device's TPM binding key (admin certificate)",
      )
      .argument('<release>', 'NAME@VERSION, e.g. mnist@3')
      .option('--device <id>', 'the device that must run it')
      .option('--group <name>', 'the group that must run it (edgeguard attest group)')
      .option('--canary <percent>', 'only this share of the group first, e.g. 10%', parsePercent)
      .option(
        '--max-failures <n>',
        'halt the rollout when more devices than this report a failure',
        parseNonNegativeInt,
      )
      .option(
        '--content-key <file>',
        'the content key the package is encrypted with (the first assignment of a release)',
      ),
  ).action(async (spec: string, opts: AssignOptions, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    if ((opts.device === undefined) === (opts.group === undefined))
      throw new EdgeguardError('EG_USAGE', 'pass exactly one of --device ID or --group NAME.');
    if (opts.canary !== undefined && opts.group === undefined)
      throw new EdgeguardError('EG_USAGE', '--canary applies to a --group.');
    const body: Record<string, unknown> = {
      ...parseRelease(spec),
      ...(opts.device !== undefined ? { device: opts.device } : { group: opts.group }),
      ...(opts.canary !== undefined ? { canaryPercent: opts.canary } : {}),
      ...(opts.maxFailures !== undefined ? { maxFailures: opts.maxFailures } : {}),
    };
    if (opts.contentKey !== undefined) {
      const key = await readContentKeyFile(opts.contentKey);
      body.contentKey = b64url(key.bytes);
      wipe(key.bytes);
    }
    const a = await run(adminClient(opts), (c) =>
      c.callChecked(Assignment, 'assignment', 'POST', '/v1/releases/assignments', body),
    );
    out.result({ ok: true, assignment: a }, assignmentLines(a));
  });

  withConnection(
    release
      .command('status')
      .description(
        'per device: the assigned and installed release, the last version report, failures (admin certificate)',
      )
      .option('--release <name>', 'only this release'),
  ).action(async (opts: ConnectionOptions & { release?: string }, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    const q = opts.release !== undefined ? `?release=${encodeURIComponent(opts.release)}` : '';
    const r = await run(adminClient(opts), (c) =>
      c.callChecked(ReleaseStatusResponse, 'release status', 'GET', `/v1/releases/status${q}`),
    );
    const halted = r.assignments.filter((a) => a.state === 'halted');
    out.result(r, [
      ...r.assignments.flatMap(assignmentLines),
      ...halted.map((a) => `HALTED ${a.release}@${a.version} (${a.id}): ${a.haltReason ?? ''}`),
      ...(r.devices.length ? r.devices.map(statusLine) : ['no device has an assignment or a report']),
    ]);
  });

  withConnection(
    release
      .command('director-keys')
      .description("the director's public signing key (PEM): devices pin it to verify their director metadata")
      .option('-o, --out <file>', 'write the PEM here'),
  ).action(async (opts: ConnectionOptions & { out?: string }, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    const r = await run(adminClient(opts), (c) =>
      c.callChecked(DirectorKeysAnswer, 'director keys', 'GET', '/v1/director/keys'),
    );
    const pem = r.keys.map((k) => k.pem).join('');
    if (opts.out !== undefined) {
      await writeFile(opts.out, pem, { mode: 0o644 }).catch((e: unknown) => {
        throw fsError(e, opts.out!, 'write');
      });
    }
    out.result(
      { ok: true, ...r, ...(opts.out !== undefined ? { output: opts.out } : {}) },
      opts.out !== undefined ? `director key ${r.keys[0]?.keyId} -> ${opts.out}` : pem.trimEnd(),
    );
  });
}
