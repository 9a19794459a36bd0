/**
 * `edgeguard device init|status` (device side: creates and inspects the binding key) and
 * `edgeguard key wrap` (operator side: wraps a content key to a device's binding.pub, no TPM).
 */
import { Command } from 'commander';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readContentKeyFile, wipe } from '../../crypto/index.ts';
import { ERROR_EXIT_CODES, EdgeguardError, fsError, FILE_CAPS, readBoundedText } from '../../errors/index.ts';
import {
  DEVICE_FILES,
  encodeWrappedKeyFile,
  initDevice,
  deviceKeyStatus,
  parseBindingPublicKey,
  policyNotSatisfied,
  wrapContentKey,
  bindingKeyThumbprint,
  type TpmKeyStatus,
  openDeviceKeyStore,
  TpmKeyStore,
} from '../../keystore/index.ts';
import { DEFAULT_BINDING_PCRS } from '../../tpm/index.ts';
import { Output, globalOptions } from '../output.ts';
import { reprovisionDevice } from './device-reprovision.ts';
import {
  NV_INDEX_OPTION_HELP,
  floorLines,
  provisionNewDeviceFloor,
  registerDeviceFloorCommands,
  tpmFloorStatus,
} from './device-floor.ts';
import { DEFAULT_FLOOR_NV_INDEX, parseFloorNvIndex } from '../../release/index.ts';

export function registerDeviceCommands(program: Command): void {
  const device = program
    .command('device')
    .description("create and inspect this device's key store (TPM-bound or software)");

  device
    .command('init')
    .description('create the device binding key (with a TPM also the EK, AK and TPM2_Certify evidence) in DIR')
    .requiredOption('--dir <dir>', 'device directory to create')
    .option('--tpm <tcti>', 'use the TPM at this TCTI: device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321')
    .option(
      '--software',
      'use a software key (PEM file, mode 0600): NOT hardware-bound, for development or TPM-less devices',
    )
    .option('--pcrs <selection>', "PCRs the binding key's policy covers (TPM only)", DEFAULT_BINDING_PCRS)
    .option(
      '--pcr-policy-key <file>',
      "the operator's PCR policy key (PREFIX.pub from `attest policy-key create`): the binding key also answers under PCR values it signs (TPM only)",
    )
    .option('--nv-index <index>', `${NV_INDEX_OPTION_HELP} (TPM only)`)
    .action(async (opts: InitOptions, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      if (Boolean(opts.tpm) === Boolean(opts.software)) {
        throw new EdgeguardError('EG_USAGE', 'pass exactly one of --tpm TCTI or --software.');
      }
      const pcrsGiven = cmd.getOptionValueSource('pcrs') === 'cli';
      if (opts.software && pcrsGiven) throw new EdgeguardError('EG_USAGE', '--pcrs only applies with --tpm.');
      if (opts.software && opts.pcrPolicyKey)
        throw new EdgeguardError('EG_USAGE', '--pcr-policy-key only applies with --tpm.');
      if (opts.software && opts.nvIndex) throw new EdgeguardError('EG_USAGE', '--nv-index only applies with --tpm.');
      const floorIndex = opts.nvIndex ? parseFloorNvIndex(opts.nvIndex) : DEFAULT_FLOOR_NV_INDEX;
      const pcrPolicyKey = opts.pcrPolicyKey ? await readText(opts.pcrPolicyKey) : undefined;
      const r = await initDevice({
        dir: opts.dir,
        ...(opts.tpm ? { tcti: opts.tpm, pcrs: opts.pcrs } : {}),
        ...(pcrPolicyKey !== undefined ? { pcrPolicyKey } : {}),
      });
      const d = r.device;
      if (d.provider === 'software')
        out.warn(`${d.posture}: anyone who copies ${r.dir} can unwrap keys wrapped to it.`);
      // A TPM device's anti-rollback floor is provisioned here, never lazily by the agent.
      const floor = await provisionNewDeviceFloor(r.store, floorIndex, out, r.dir);
      out.result(
        {
          ok: true,
          dir: r.dir,
          provider: d.provider,
          hardwareBound: r.store.posture.hardwareBound,
          posture: d.posture,
          bindingKey: d.bindingKey,
          tpm: d.tpm ?? null,
          floor: floor ?? null,
          files: r.files,
        },
        [
          `device ${r.dir}: ${d.posture}`,
          `binding key ${d.bindingKey} (RSA-2048, RSA-OAEP-256)${d.tpm ? `, TPM name ${d.tpm.bindingName}` : ''}`,
          ...(d.tpm
            ? [
                d.tpm.policyKind === 'pcr-or-authorized'
                  ? `policy: PolicyOR(PolicyPCR ${d.tpm.pcrs}, PolicyAuthorize(PCR policy key ${d.tpm.pcrPolicySigner?.slice(0, 16)}…)) = ${d.tpm.policyDigest}`
                  : `policy: PolicyPCR ${d.tpm.pcrs} = ${d.tpm.policyDigest}`,
                `AK ${d.tpm.akName}; TPM2_Certify evidence in ${join(r.dir, DEVICE_FILES.certify)}`,
              ]
            : []),
          ...(floor ? floorLines(floor) : []),
          `wrap content keys to ${join(r.dir, DEVICE_FILES.bindingPem)}: edgeguard key wrap model.key --to ${join(r.dir, DEVICE_FILES.bindingPem)} -o model.key.wrapped`,
        ],
      );
    });

  device
    .command('status')
    .description(
      `report the key store's posture; with a TPM, check the certify evidence, show which PCRs differ from the provisioned values and whether the binding key answers now (exit ${ERROR_EXIT_CODES.EG_TPM_POLICY}, EG_TPM_POLICY, when it would be refused), and the EK hash for auto-approve.txt`,
    )
    .requiredOption('--dir <dir>', 'device directory')
    .option('--tpm <tcti>', 'override the TCTI recorded in device.json')
    .option('--nv-index <index>', NV_INDEX_OPTION_HELP)
    .action(async (opts: { dir: string; tpm?: string; nvIndex?: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const baseIndex = opts.nvIndex ? parseFloorNvIndex(opts.nvIndex) : DEFAULT_FLOOR_NV_INDEX;
      const st = await deviceKeyStatus(opts.dir, opts.tpm ? { tcti: opts.tpm } : {});
      const t = st.tpm;
      const store = t ? await openDeviceKeyStore(opts.dir, opts.tpm ? { tcti: opts.tpm } : {}) : undefined;
      const floor = store instanceof TpmKeyStore ? await tpmFloorStatus(store, baseIndex) : undefined;
      if (!t) out.warn(`${st.posture.label}: anyone who copies ${opts.dir} can unwrap keys wrapped to it.`);
      out.result(
        {
          ok: t ? t.satisfied : true,
          provider: st.provider,
          hardwareBound: st.posture.hardwareBound,
          posture: st.posture.label,
          bindingKey: st.posture.bindingKey,
          ...(t ? { tpm: t } : {}),
          ...(floor ? { floor } : {}),
        },
        [
          `device ${opts.dir}: ${st.posture.label}`,
          `binding key ${st.posture.bindingKey}`,
          ...(t ? tpmLines(t) : []),
          ...(floor ? floorLines(floor) : []),
        ],
      );
      if (t && !t.satisfied) {
        const err = policyNotSatisfied(t);
        if (!out.opts.json) process.stderr.write(`${err.code}: ${err.message}\n`);
        process.exitCode = ERROR_EXIT_CODES.EG_TPM_POLICY;
      }
    });

  device
    .command('reprovision')
    .description(
      'after a tamper lock: a new binding key (the old key store is kept under DIR/retired/), the lock cleared; then wrap keys again and re-enroll',
    )
    .requiredOption('--dir <dir>', 'device directory')
    .option('--tpm <tcti>', 'override the TCTI recorded in device.json')
    .option('--nv-index <index>', NV_INDEX_OPTION_HELP)
    .action(async (opts: { dir: string; tpm?: string; nvIndex?: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const r = await reprovisionDevice({
        dir: opts.dir,
        tcti: opts.tpm,
        floorIndex: opts.nvIndex ? parseFloorNvIndex(opts.nvIndex) : undefined,
      });
      if (r.floor && !r.floor.moved)
        out.warn(
          `the anti-rollback floor was not moved to the new binding key (${r.floor.code}), so updates stay refused: ${r.floor.message}`,
        );
      const bindingPem = join(r.dir, DEVICE_FILES.bindingPem);
      out.result(
        {
          ok: true,
          dir: r.dir,
          unlocked: r.wasLocked,
          bindingKey: r.device.bindingKey,
          previousBindingKey: r.previousBindingKey,
          retiredTo: r.retiredTo,
          floor: r.floor ? (r.floor.moved ? { moved: true } : { moved: false, code: r.floor.code }) : null,
        },
        [
          `device ${r.dir}: new binding key ${r.device.bindingKey} (was ${r.previousBindingKey})${r.wasLocked ? '; tamper lock cleared' : ''}`,
          `the old key store and enrollment are kept in ${r.retiredTo}`,
          ...(r.floor?.moved ? ['the anti-rollback floor moved to the new binding key; every floor is unchanged'] : []),
          `next: wrap the content keys to ${bindingPem} (edgeguard key wrap ... --to ${bindingPem}),`,
          '      remove the tampered device on the control plane (edgeguard device remove ID),',
          '      enroll again (edgeguard agent enroll) and approve it (edgeguard device approve ID).',
        ],
      );
    });

  registerDeviceFloorCommands(device);

  const key =
    program.commands.find((c) => c.name() === 'key') ?? program.command('key').description('make and handle keys');
  key
    .command('wrap')
    .description(
      "wrap a content key to a device's binding public key (RSA-OAEP-256); runs on the operator's machine, no TPM needed",
    )
    .argument('<content-key>', 'content key file (JWK, mode 0600)')
    .requiredOption('--to <binding.pub>', "the device's binding public key (PEM), from `edgeguard device init`")
    .requiredOption('-o, --out <file>', 'wrapped key file to write')
    .option('--force', 'overwrite the output file')
    .action(async (keyPath: string, opts: { to: string; out: string; force?: boolean }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const binding = parseBindingPublicKey(await readText(opts.to), opts.to);
      const contentKey = await readContentKeyFile(keyPath);
      let text: string;
      try {
        text = encodeWrappedKeyFile(wrapContentKey(contentKey, binding));
      } finally {
        wipe(contentKey.bytes);
      }
      try {
        await writeFile(opts.out, text, { flag: opts.force ? 'w' : 'wx', mode: 0o644 });
      } catch (e) {
        throw fsError(e, opts.out, 'write');
      }
      const thumb = bindingKeyThumbprint(binding);
      out.result({ ok: true, output: opts.out, kid: contentKey.kid, bindingKey: thumb, alg: 'RSA-OAEP-256' }, [
        `wrapped content key ${contentKey.kid} to binding key ${thumb} (RSA-OAEP-256) -> ${opts.out}`,
      ]);
    });
}

interface InitOptions {
  dir: string;
  tpm?: string;
  software?: boolean;
  pcrs: string;
  pcrPolicyKey?: string;
  nvIndex?: string;
}

async function readText(path: string): Promise<string> {
  return await readBoundedText(path, FILE_CAPS.certificate, 'read');
}

function tpmLines(t: TpmKeyStatus): string[] {
  const lines = [
    `TPM2_Certify evidence verified: AK ${t.certify.akName.slice(0, 16)}… certifies binding key ${t.certify.bindingName.slice(0, 16)}…`,
    `EK sha256 (a line for the control plane's auto-approve.txt): ${t.ekSha256}`,
    `identity key (TLS client key, no PCR policy): ${t.identityKey ? t.identityKey.name.slice(0, 16) + '…' : 'none yet (made when the TLS key is next opened)'}`,
  ];
  const kind = t.policyKind === 'pcr' ? 'PolicyPCR' : 'PolicyPCR or an operator-signed PCR authorization';
  if (t.differences.length === 0) lines.push(`PCRs ${t.pcrs}: all at their provisioned values`);
  else {
    lines.push(`PCRs that differ from the provisioned values (${t.differences.length}):`);
    for (const d of t.differences)
      lines.push(
        `  ${d.bank}:${d.index}  provisioned ${d.provisioned || '(none)'}`,
        `  ${' '.repeat(d.bank.length + String(d.index).length + 1)}  current     ${d.current}`,
      );
  }
  for (const r of t.authorizations.rejected) lines.push(`ignored authorization ${r.file}: ${r.code}: ${r.message}`);
  if (t.policyKind === 'pcr-or-authorized')
    lines.push(
      `PCR authorizations: ${t.authorizations.valid.length} valid, ${t.authorizations.rejected.length} ignored`,
    );
  lines.push(
    t.branch === 'provisioned'
      ? `policy (${kind}): satisfied by the provisioned values`
      : t.branch === 'authorized'
        ? `policy (${kind}): satisfied by the authorization ${t.authorization}`
        : `policy (${kind}): NOT satisfied by the current PCRs; unwrap will be refused`,
  );
  return lines;
}
