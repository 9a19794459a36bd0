/**
 * Signed releases in the agent (agent.yaml `update:`): `edgeguard agent update` runs one check and
 * install (src/release: TUF, OMS signature, floor, A/B slots or the installer command) of the
 * configured target, or, with `update.director`, of what the control plane's director assigns
 * this device (asked with its mTLS identity, reported back as a signed version report); a serving
 * agent serves the active slot's model and, when the pointer changes, loads the new slot beside
 * the old one and swaps (ServedRuntime: requests in flight finish on the old one). Install
 * outcomes are journaled by the serving agent (release.installed / release.rejected).
 */
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { publicKeyId, readPublicSigningKey, signingAlgorithmOf, type SigningKeyPair } from '../crypto/index.ts';
import { enrolledServer, reportInstalledVersion, type EgressDialer, type FleetClient } from '../fleet/index.ts';
import { openDeviceKeyStore, TpmKeyStore, type ContentKeySource, type KeyStore } from '../keystore/index.ts';
import {
  SoftwareFloor,
  TpmFloor,
  pendingOutcomes,
  provisionTrustedRoot,
  recordOutcome,
  removeInterruptedReplacementsSync,
  RepositoryFetcher,
  servedSlots,
  slotContentKey,
  updateDevice,
  updateFromDirector,
  withInstallLock,
  type AntiRollbackFloor,
  type DirectorUpdateOutcome,
  type InstallContext,
  type VerifiedSlot,
} from '../release/index.ts';
import { EdgeguardError, FILE_CAPS, isEdgeguardError, readBounded } from '../errors/index.ts';
import type { AgentConfig } from './config.ts';
import type { AgentJournal } from './agent-journal.ts';
import { AgentIdentity } from './renewal.ts';
import { agentEgressDialer } from './egress.ts';

type UpdateConfig = NonNullable<AgentConfig['update']>;

export function floorFor(update: UpdateConfig, store: KeyStore | undefined): AntiRollbackFloor {
  return store instanceof TpmKeyStore ? new TpmFloor(store, update.tpmNvIndex) : new SoftwareFloor(update.dir!);
}

function configuredKey(config: AgentConfig, store: KeyStore | undefined): ContentKeySource {
  return store && 'device' in config.contentKey ? { ...config.contentKey, store } : config.contentKey;
}

export async function installContext(config: AgentConfig, store: KeyStore | undefined): Promise<InstallContext> {
  const update = config.update!;
  return {
    dataDir: update.dir!,
    publicKeys: await Promise.all(config.trust.publicKeys.map((p) => readPublicSigningKey(p))),
    contentKey: configuredKey(config, store),
    floor: floorFor(update, store),
    executionProviders: config.runtime.executionProviders,
    installers: {
      ...(update.firmware ? { firmware: update.firmware.command } : {}),
      ...(update.agent ? { agent: update.agent.command } : {}),
    },
  };
}

/**
 * The serving agent checks the floor but leaves raising it to the installer (its commit, or the
 * recovery at the start of the next install): a TPM counter raise is read-then-increment, so a
 * serving agent loading a fresh switch while `agent update` commits in another process would
 * increment it twice, past the installed version.
 */
function checkOnly(floor: AntiRollbackFloor): AntiRollbackFloor {
  return {
    provider: floor.provider,
    label: floor.label,
    read: (kind) => floor.read(kind),
    raise: (kind) => floor.read(kind),
  };
}

/**
 * The models and key to serve: the active slot's package in place of models.primary, once a
 * release is installed (recovered when no install runs, read as it is while one does).
 */
export async function servedModels(
  config: AgentConfig,
  store: KeyStore | undefined,
): Promise<{ config: AgentConfig; slot?: VerifiedSlot | undefined }> {
  if (!config.update) return { config };
  const device =
    store ?? ('device' in config.contentKey ? await openDeviceKeyStore(config.contentKey.device) : undefined);
  const state = await servedSlots({
    dataDir: config.update.dir!,
    floor: checkOnly(floorFor(config.update, device)),
  });
  if (!state.active) return { config };
  const key = slotContentKey(state.active, config.contentKey);
  return {
    config: {
      ...config,
      models: { ...config.models, primary: state.active.packagePath },
      contentKey: key as AgentConfig['contentKey'],
    },
    slot: state.active,
  };
}

/** The pointer's bytes: what the watcher compares. */
async function pointerBytes(dir: string): Promise<string> {
  return readFile(join(dir, 'releases', 'active'), 'utf8').catch(() => '');
}

/** A check run on an interval (unref'd), never two at once; `check()` runs one now. */
abstract class PeriodicCheck {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  /** One check; reports its own failures (never rejects). */
  protected abstract tick(): Promise<void>;

  protected startTimer(intervalMs: number): void {
    this.timer = setInterval(() => void this.check(), intervalMs);
    this.timer.unref();
  }

  /** One check now (also what the interval does). */
  check(): Promise<void> {
    this.running ??= this.tick().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}

/** Polls the active pointer; `switched` runs (one at a time) when it changed. */
export class SlotWatcher extends PeriodicCheck {
  private last: string | undefined;

  constructor(
    private readonly dir: string,
    private readonly intervalMs: number,
    private readonly switched: () => Promise<void>,
    private readonly log?: Logger,
  ) {
    super();
  }

  async start(): Promise<void> {
    this.last = await pointerBytes(this.dir);
    this.startTimer(this.intervalMs);
  }

  protected async tick(): Promise<void> {
    try {
      const now = await pointerBytes(this.dir);
      if (now === this.last) return;
      await this.switched();
      this.last = now;
    } catch (e) {
      this.log?.error({ err: e }, 'could not load the switched release; still serving the previous one');
      this.last = await pointerBytes(this.dir);
    }
  }
}

/** Journal the recorded install outcomes, then remove them. */
export async function journalOutcomes(dir: string, journal: AgentJournal, deviceId: string): Promise<void> {
  for (const p of await pendingOutcomes(dir)) {
    // A report file is read back from disk: only members of their type are used (an array of
    // objects whose toString is not a function would make the template literals throw), and one
    // that is not exactly a success is journaled as a rejection.
    const o = p.outcome as unknown as {
      ok?: unknown;
      release?: { name?: unknown; version?: unknown } | null;
      error?: { code?: unknown; message?: unknown } | null;
    } | null;
    const text = (v: unknown, otherwise: string) =>
      typeof v === 'string' || typeof v === 'number' ? String(v) : otherwise;
    const version = text(o?.release?.version, 'unknown');
    const releaseId = (o?.release ? `${text(o.release.name, 'unknown')}@${version}` : 'unknown').slice(0, 200);
    if (o?.ok === true) journal.record('release.installed', 'success', { releaseId, deviceId, version });
    else
      journal.record('release.rejected', 'denied', {
        releaseId,
        deviceId,
        reason: `${text(o?.error?.code, 'EG_INTERNAL')}: ${text(o?.error?.message, '')}`.slice(0, 2000),
      });
    await p.done();
  }
}

export interface AgentUpdateOptions {
  /** The package target (default update.target); with update.director, refused unless the director assigned it. */
  target?: string | undefined;
  /** How long to wait for another install on this data directory (default 0: EG_BUSY at once). */
  waitMs?: number | undefined;
}

/** One update's outcome: the install's, with the director's answer in director mode. */
export type AgentUpdateOutcome = DirectorUpdateOutcome;

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

/** DIR/tuf with a trusted root.json (provisioned from update.trustedRoot the first time). */
async function trustedMetadataDir(update: UpdateConfig): Promise<string> {
  const metadataDir = join(update.dir!, 'tuf');
  if (!(await exists(join(metadataDir, 'root.json')))) {
    if (!update.trustedRoot)
      throw new EdgeguardError(
        'EG_CONFIG',
        `${metadataDir} has no trusted root.json; set update.trustedRoot to the repository's root.json for the first update.`,
      );
    await provisionTrustedRoot(
      metadataDir,
      await readBounded(update.trustedRoot, FILE_CAPS.config, 'read the trusted root (update.trustedRoot)'),
    );
  }
  removeInterruptedReplacementsSync(metadataDir);
  return metadataDir;
}

/** The key of the device certificate, as the signer of its version reports. */
function reportSigner(keyPem: string): SigningKeyPair {
  const privateKey = createPrivateKey(keyPem);
  const publicKey = createPublicKey(privateKey);
  return { algorithm: signingAlgorithmOf(privateKey), privateKey, publicKey, keyId: publicKeyId(publicKey) };
}

/** The device identity of `upload` and one client of it (it follows certificate renewals). */
interface DirectorConnection {
  identity: AgentIdentity;
  client: FleetClient;
}

/** Director mode: ask the control plane of `upload` with the device identity, install, report. */
async function directorUpdate(
  config: AgentConfig,
  install: InstallContext,
  metadataDir: string,
  target: string | undefined,
  { identity, client }: DirectorConnection,
): Promise<AgentUpdateOutcome> {
  const update = config.update!;
  const directorKeys = await Promise.all(update.director!.keys.map((p) => readPublicSigningKey(p)));
  const signer = reportSigner(identity.keyPem);
  return updateFromDirector({
    install,
    director: {
      server: identity.server,
      ca: identity.caPem,
      cert: identity.certPem,
      key: identity.keyPem,
      dialer: identity.dialer,
      deviceId: identity.deviceId,
      metadataDir,
      downloadDir: join(update.dir!, 'download'),
      directorKeys,
      ...(target ? { path: target } : {}),
    },
    report: (r) => reportInstalledVersion(client, signer, { deviceId: identity.deviceId, ...r }),
  });
}

/** The egress allowlist of a run of its own, named after the control plane of agent.yaml's upload: section. */
async function ownDialer(config: AgentConfig): Promise<EgressDialer | undefined> {
  if (!config.egress) return undefined;
  // Only the control plane's URL: the device credential (a TPM-wrapped key) is not opened for it.
  const upload = config.upload;
  const server = upload ? ('device' in upload ? await enrolledServer(upload.device) : upload.server) : undefined;
  return agentEgressDialer(config, server, () => undefined);
}

/**
 * One check and install under the data directory's install lock (EG_BUSY, thrown, when another
 * install holds it: nothing is touched or recorded); the identity (director mode) is the serving
 * agent's, or one opened for this run.
 */
function updateOnce(
  config: AgentConfig,
  store: KeyStore | undefined,
  target: string | undefined,
  connection: DirectorConnection | undefined,
  waitMs = 0,
): Promise<AgentUpdateOutcome> {
  return withInstallLock(config.update!.dir!, () => updateLocked(config, store, target, connection), { waitMs });
}

async function updateLocked(
  config: AgentConfig,
  store: KeyStore | undefined,
  target: string | undefined,
  connection: DirectorConnection | undefined,
): Promise<AgentUpdateOutcome> {
  const update = config.update!;
  const metadataDir = await trustedMetadataDir(update);
  // The device's key store decides the floor (TPM NV counter or file): open it when not handed one.
  const device =
    store ?? ('device' in config.contentKey ? await openDeviceKeyStore(config.contentKey.device) : undefined);
  const install = await installContext(config, device);
  let outcome: AgentUpdateOutcome;
  if (update.director) {
    const own = connection ? undefined : await AgentIdentity.fromConfig(config.upload!);
    // A run of its own (`edgeguard agent update`) keeps to agent.yaml's egress allowlist too: a
    // denial is this run's outcome (EG_EGRESS_DENIED), as the serving agent journals it.
    if (own) own.dialer = await agentEgressDialer(config, own.server, () => undefined);
    try {
      outcome = await directorUpdate(
        config,
        install,
        metadataDir,
        target,
        connection ?? { identity: own!, client: own!.client() },
      );
    } finally {
      own?.close();
    }
  } else {
    // A static repository host is reached through the egress allowlist too (agent.yaml `egress:`,
    // where the host is one of egress.endpoints); a denial is this run's outcome (EG_EGRESS_DENIED).
    const dialer = connection ? connection.identity.dialer : await ownDialer(config);
    const fetcher = dialer ? new RepositoryFetcher({ dialer }) : undefined;
    try {
      outcome = await updateDevice({
        install,
        metadataDir,
        metadataBaseUrl: update.metadataUrl!,
        targetBaseUrl: update.targetsUrl!,
        downloadDir: join(update.dir!, 'download'),
        target: target!,
        fetcher,
      });
    } finally {
      fetcher?.close();
    }
  }
  if (!outcome.nothingAssigned) await recordOutcome(update.dir!, outcome);
  return outcome;
}

/**
 * One update check and install now (`edgeguard agent update`): from the repository's configured
 * target, or what the director assigns; the outcome is recorded for the journal.
 */
export async function runAgentUpdate(config: AgentConfig, o: AgentUpdateOptions = {}): Promise<AgentUpdateOutcome> {
  const update = config.update;
  if (!update)
    throw new EdgeguardError(
      'EG_CONFIG',
      'agent.yaml has no update: section; add update.metadataUrl and update.targetsUrl (or update.director) to install releases.',
    );
  const target = o.target ?? update.target;
  if (!update.director && !target)
    throw new EdgeguardError('EG_USAGE', 'no release target: pass --target PATH or set update.target in agent.yaml.');
  return updateOnce(config, undefined, target, undefined, o.waitMs);
}

/**
 * The serving agent's own director check (update.director.intervalMs), one at a time; the switch
 * it makes is picked up by the SlotWatcher (`slotsChanged`) like one by `agent update`. While
 * another process installs (a timer's `agent update`), the round is skipped and the next interval
 * tries again.
 */
export class DirectorPoller extends PeriodicCheck {
  private readonly connection: DirectorConnection;

  constructor(
    private readonly config: AgentConfig,
    private readonly store: KeyStore | undefined,
    identity: AgentIdentity,
    private readonly slotsChanged: () => Promise<void>,
    private readonly log?: Logger,
  ) {
    super();
    this.connection = { identity, client: identity.client() };
  }

  start(): void {
    this.startTimer(this.config.update!.director!.intervalMs!);
  }

  protected async tick(): Promise<void> {
    try {
      const outcome = await updateOnce(this.config, this.store, undefined, this.connection);
      if (!outcome.ok) this.log?.warn({ error: outcome.error }, 'the director update installed nothing');
      await this.slotsChanged();
    } catch (e) {
      if (isEdgeguardError(e, 'EG_BUSY'))
        this.log?.info({ holder: e.details?.holder }, `director check skipped: ${e.message}`);
      else this.log?.error({ err: e }, 'the director update failed; still serving the current release');
    }
  }
}
