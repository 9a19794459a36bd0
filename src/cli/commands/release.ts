/**
 * `edgeguard release ...`: the TUF release repository (src/release, docs/formats.md).
 *
 *   release init --dir REPO [--root-expiry 365d ...] [--threshold ROLE=N ...]
 *   release add PACKAGE --version N [--min-version N] [--kind model|agent|firmware] --dir REPO
 *               [--signature FILE] [--smoke-input FILE --smoke-label LABEL] [--pub publisher.pub ...]
 *               [--pcr-authorization AUTH.json ...]
 *   release publish --dir REPO          sign the staged targets, a new snapshot and timestamp
 *   release rotate-root --dir REPO      new root keys; root version N+1 signed by old and new
 *   release assign | status | director-keys   the control plane's director (release-director.ts)
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import {
  addRelease,
  initRepository,
  parseDuration,
  publishRepository,
  RELEASE_KINDS,
  ROLES,
  rotateRoot,
  type ReleaseKind,
  type RoleName,
} from '../../release/index.ts';
import { EdgeguardError } from '../../errors/index.ts';
import { readPublicSigningKey } from '../../crypto/index.ts';
import { Output, globalOptions } from '../output.ts';
import { collect, parseNonNegativeInt } from '../args.ts';
import { registerDirectorCommands } from './release-director.ts';

function parseThresholds(values: string[]): Partial<Record<RoleName, number>> {
  const out: Partial<Record<RoleName, number>> = {};
  for (const v of values) {
    const [role, n] = v.split('=');
    if (!ROLES.includes(role as RoleName) || !/^[1-9]\d?$/.test(n ?? '')) {
      throw new EdgeguardError('EG_USAGE', `--threshold ${v}: expected ROLE=N with ROLE one of ${ROLES.join(', ')}.`);
    }
    out[role as RoleName] = Number(n);
  }
  return out;
}

function registerInit(release: Command): void {
  const cmd = release
    .command('init')
    .description(
      'make a release repository: Ed25519 keys (offline root/targets, online snapshot/timestamp) and signed version 1 metadata',
    )
    .requiredOption('--dir <repo>', 'release workspace (its repository/ subfolder is what gets served)');
  for (const role of ROLES)
    cmd.option(`--${role}-expiry <duration>`, `how long ${role} metadata stays valid (e.g. 7d, 12h)`);
  cmd
    .option('--threshold <role=n>', 'signatures a role needs (as many keys are made); repeatable', collect, [])
    .action(async (opts: Record<string, string> & { dir: string; threshold: string[] }, c: Command) => {
      const expirySeconds = Object.fromEntries(
        ROLES.filter((r) => opts[`${r}Expiry`]).map((r) => [r, parseDuration(opts[`${r}Expiry`]!)]),
      );
      const result = await initRepository({
        dir: opts.dir,
        expirySeconds,
        thresholds: parseThresholds(opts.threshold),
      });
      new Output(globalOptions(c)).result({ ok: true, keyIds: result.keyIds, paths: result.paths }, [
        `release repository in ${opts.dir}: serve ${result.paths.repository}`,
        `offline keys (root, targets): ${result.paths.offlineKeys}  move them to an offline machine`,
        `online keys (snapshot, timestamp): ${result.paths.onlineKeys}  for the control plane`,
      ]);
    });
}

function parseKind(value: string): ReleaseKind {
  if (!RELEASE_KINDS.includes(value as ReleaseKind)) {
    throw new InvalidArgumentError(`expected one of ${RELEASE_KINDS.join(', ')}.`);
  }
  return value as ReleaseKind;
}

interface AddOptions {
  dir: string;
  version: number;
  minVersion?: number;
  kind: ReleaseKind;
  signature?: string;
  smokeInput?: string;
  smokeLabel?: string;
  pub?: string[];
  pcrAuthorization?: string[];
}

function registerAdd(release: Command): void {
  release
    .command('add <package>')
    .description('stage a signed package (and its .sig.json) as release targets; `release publish` makes them visible')
    .requiredOption('--dir <repo>', 'release workspace')
    .requiredOption(
      '--version <n>',
      'release version (must equal the version signed in the package)',
      parseNonNegativeInt,
    )
    .option('--min-version <n>', 'the lowest version a device may run once it installed this one', parseNonNegativeInt)
    .addOption(new Option('--kind <kind>', 'model, agent or firmware').default('model').argParser(parseKind))
    .option('--signature <file>', 'the package signature (default PACKAGE.sig.json)')
    .option('--smoke-input <file>', 'an input the device runs before switching to this release')
    .option('--smoke-label <label>', 'the label the smoke input must produce')
    .option('--pub <file>', 'trusted publisher public key: refuse a package it did not sign (repeatable)', collect)
    .option(
      '--pcr-authorization <file>',
      'the signed PCR values of the boot this release brings (attest authorize-pcrs); shipped with it (repeatable)',
      collect,
    )
    .action(async (packagePath: string, opts: AddOptions, c: Command) => {
      if (Boolean(opts.smokeInput) !== Boolean(opts.smokeLabel)) {
        throw new EdgeguardError('EG_USAGE', '--smoke-input and --smoke-label go together.');
      }
      const target = await addRelease({
        dir: opts.dir,
        packagePath,
        version: opts.version,
        minVersion: opts.minVersion,
        kind: opts.kind,
        signaturePath: opts.signature,
        smokeTest: opts.smokeInput ? { inputPath: opts.smokeInput, expectedLabel: opts.smokeLabel! } : undefined,
        publisherKeys: opts.pub ? await Promise.all(opts.pub.map((f) => readPublicSigningKey(f))) : undefined,
        pcrAuthorizationPaths: opts.pcrAuthorization,
      });
      new Output(globalOptions(c)).result({ ok: true, target: target.toJSON(), path: target.path }, [
        `staged ${target.path} (${target.length} bytes, sha256 ${target.hashes.sha256}); run release publish`,
      ]);
    });
}

export function registerReleaseCommands(program: Command): void {
  const release = program.command('release').description('signed releases: the TUF repository devices update from');
  registerInit(release);
  registerAdd(release);
  release
    .command('publish')
    .description('sign the staged targets and new targets, snapshot and timestamp versions')
    .requiredOption('--dir <repo>', 'release workspace')
    .action(async (opts: { dir: string }, c: Command) => {
      const r = await publishRepository(opts.dir);
      new Output(globalOptions(c)).result({ ok: true, ...r }, [
        `published targets v${r.targetsVersion}, snapshot v${r.snapshotVersion}, timestamp v${r.timestampVersion}` +
          (r.published.length ? `: ${r.published.join(', ')}` : ''),
      ]);
    });
  release
    .command('rotate-root')
    .description('new root keys: root version N+1 signed by the old and the new keys; old keys move to keys/retired')
    .requiredOption('--dir <repo>', 'release workspace')
    .action(async (opts: { dir: string }, c: Command) => {
      const r = await rotateRoot(opts.dir);
      new Output(globalOptions(c)).result({ ok: true, ...r }, [
        `root v${r.version} signed by old (${r.oldKeyIds.map((k) => k.slice(0, 16)).join(', ')}) and new (${r.newKeyIds.map((k) => k.slice(0, 16)).join(', ')}) keys`,
      ]);
    });
  registerDirectorCommands(release);
}
