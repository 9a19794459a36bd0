/**
 * `edgeguard attest policy-key create` and `attest authorize-pcrs` (operator side, no TPM needed
 * for --values): the PCR policy signing key, and authorizations of PCR values signed with it, which
 * a device whose binding key was made with `device init --pcr-policy-key` accepts instead of its
 * provisioned values (tpm/pcr-authorization.ts, docs/formats.md).
 */
import { Command } from 'commander';
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import {
  assertPrivateFileMode,
  encodePrivateKeyPem,
  encodePublicKeyPem,
  writePrivateFile,
} from '../../crypto/index.ts';
import { EdgeguardError, FILE_CAPS, fsError, readBoundedText } from '../../errors/index.ts';
import { openDeviceKeyStore, TpmKeyStore } from '../../keystore/index.ts';
import {
  HASH_ALGS,
  TAMPER_PCR,
  parsePcrSelection,
  policySignerPublic,
  signPcrAuthorization,
  type PcrSelection,
  type PcrValues,
} from '../../tpm/index.ts';
import { Output, globalOptions } from '../output.ts';

export function registerPcrAuthorizationCommands(attest: Command): void {
  attest
    .command('policy-key')
    .description("the operator's PCR policy signing key (RSA-2048): binding keys accept PCR values it signs")
    .command('create')
    .description('make a PCR policy signing key pair: PREFIX.key (mode 0600, keep it offline) and PREFIX.pub')
    .requiredOption('-o, --out <prefix>', 'path prefix for PREFIX.key and PREFIX.pub')
    .option('--force', 'overwrite existing files')
    .action(async (opts: { out: string; force?: boolean }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const keyPath = `${opts.out}.key`;
      const pubPath = `${opts.out}.pub`;
      await writePrivateFile(keyPath, encodePrivateKeyPem(pair.privateKey), opts.force);
      await writeFile(pubPath, encodePublicKeyPem(pair.publicKey), { flag: opts.force ? 'w' : 'wx' }).catch((e) => {
        throw fsError(e, pubPath, 'write');
      });
      const name = policySignerPublic(pair.publicKey).name.toString('hex');
      out.result({ ok: true, privateKey: keyPath, publicKey: pubPath, signerName: name }, [
        `PCR policy signing key (RSA-2048), TPM name ${name}`,
        `private: ${keyPath} (mode 0600): whoever holds it decides which boot states unlock the fleet's keys`,
        `public:  ${pubPath}: give it to devices (edgeguard device init --tpm ... --pcr-policy-key ${pubPath})`,
      ]);
    });

  attest
    .command('authorize-pcrs')
    .description('sign PCR values a device may boot into (a release predicts them, or read them from the device)')
    .requiredOption('--key <file>', 'the PCR policy signing key (PREFIX.key from `attest policy-key create`)')
    .requiredOption('--pcrs <selection>', 'the PCRs the authorization covers, e.g. sha256:0,2,4,7,16')
    .option('--from-device <dir>', "read the values from this device's TPM (a device directory, on the device)")
    .option('--tpm <tcti>', 'with --from-device: override the TCTI recorded in device.json')
    .option('--values <file>', 'read the values from JSON: { "sha256": { "7": "hex", ... } } (or { "pcrValues": ... })')
    .option('--label <text>', 'what this boot state is, e.g. "kernel 6.1.0-28"')
    .option('--allow-tamper-pcr', `sign a non-zero PCR ${TAMPER_PCR} (the tamper response extends it; normally never)`)
    .requiredOption('-o, --out <file>', 'the authorization to write (copy it to DIR/pcr-authorizations/ on devices)')
    .option('--force', 'overwrite the output file')
    .action(async (opts: AuthorizeOptions, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      if ((opts.fromDevice === undefined) === (opts.values === undefined))
        throw new EdgeguardError('EG_USAGE', 'pass exactly one of --from-device DIR or --values FILE.');
      const selection = parsePcrSelection(opts.pcrs);
      const privateKey = await readPolicyKey(opts.key);
      const values =
        opts.fromDevice !== undefined
          ? await valuesFromDevice(opts.fromDevice, selection, opts.tpm)
          : await valuesFromFile(opts.values!);
      const file = signPcrAuthorization({
        privateKey,
        selection,
        values,
        ...(opts.label !== undefined ? { label: opts.label } : {}),
        ...(opts.allowTamperPcr ? { allowTamperPcr: true } : {}),
      });
      await writeFile(opts.out, JSON.stringify(file, null, 2) + '\n', { flag: opts.force ? 'w' : 'wx' }).catch((e) => {
        throw fsError(e, opts.out, 'write');
      });
      if (!selection.some((b) => b.pcrs.includes(TAMPER_PCR)))
        out.warn(
          `PCR ${TAMPER_PCR} is not in ${opts.pcrs}: under this authorization the tamper response's extend no longer locks the binding key.`,
        );
      out.result(
        { ok: true, output: opts.out, pcrs: file.pcrs, approvedPolicy: file.approvedPolicy, signer: file.signer },
        [
          `authorized PolicyPCR ${file.pcrs} = ${file.approvedPolicy}`,
          `signed by ${file.signer.slice(0, 20)}… -> ${opts.out}`,
          `on each device: copy it to DIR/pcr-authorizations/ (edgeguard device status --dir DIR shows whether it applies)`,
        ],
      );
    });
}

interface AuthorizeOptions {
  key: string;
  pcrs: string;
  fromDevice?: string;
  tpm?: string;
  values?: string;
  label?: string;
  allowTamperPcr?: boolean;
  out: string;
  force?: boolean;
}

async function readPolicyKey(path: string): Promise<KeyObject> {
  await assertPrivateFileMode(path);
  const pem = await readBoundedText(path, FILE_CAPS.key, 'read the PCR policy key');
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e) {
    throw new EdgeguardError(
      'EG_KEY_FORMAT',
      `${path} is not a PEM private key; make one with \`edgeguard attest policy-key create\`.`,
      { cause: e },
    );
  }
  policySignerPublic(createPublicKey(key));
  return key;
}

async function valuesFromDevice(dir: string, selection: PcrSelection, tcti?: string): Promise<PcrValues> {
  const store = await openDeviceKeyStore(dir, tcti ? { tcti } : {});
  if (!(store instanceof TpmKeyStore))
    throw new EdgeguardError('EG_USAGE', `${dir} has no TPM (software key store): it has no PCRs to authorize.`);
  return store.client.readPcrs(selection);
}

async function valuesFromFile(path: string): Promise<PcrValues> {
  const text = await readBoundedText(path, FILE_CAPS.key, 'read the PCR values');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new EdgeguardError('EG_FORMAT', `${path} is not JSON.`);
  }
  if (v && typeof v === 'object' && 'pcrValues' in v) v = (v as { pcrValues: unknown }).pcrValues;
  if (!v || typeof v !== 'object' || Array.isArray(v))
    throw new EdgeguardError('EG_FORMAT', `${path} is not an object of banks ({ "sha256": { "7": "hex" } }).`);
  const values: PcrValues = {};
  const banks = new Set(Object.values(HASH_ALGS).map((h) => h.name));
  for (const [bank, entries] of Object.entries(v as Record<string, unknown>)) {
    if (!banks.has(bank) || !entries || typeof entries !== 'object' || Array.isArray(entries))
      throw new EdgeguardError('EG_FORMAT', `${path}: "${bank}" is not a PCR bank with index: hex entries.`);
    values[bank] = {};
    for (const [i, hex] of Object.entries(entries as Record<string, unknown>)) {
      if (!/^\d{1,2}$/.test(i) || typeof hex !== 'string' || !/^(?:[0-9a-fA-F]{2})+$/.test(hex))
        throw new EdgeguardError('EG_FORMAT', `${path}: ${bank}.${i} is not a PCR index with a hex value.`);
      values[bank]![Number(i)] = Buffer.from(hex, 'hex');
    }
  }
  return values;
}
