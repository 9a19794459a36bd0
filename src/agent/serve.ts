/**
 * The agent's inference service (`edgeguard agent serve`): HTTP on loopback or a unix socket
 * (fastify). `POST /v1/infer` takes a PNG/JPEG image or a tensor as JSON and answers the label,
 * scores, the guard verdict with its reasons, and timings.
 *
 *   - Models come from protected packages, verified and decrypted into memory only
 *     (loadProtectedModel); the content key comes from a key file or a device-wrapped key and is
 *     wiped once the sessions exist.
 *   - Inputs are decoded and processed only in memory (sharp from a buffer); the request body and
 *     the decoded pixels are wiped after each request. A flagged input leaves the process only
 *     sealed to the review public key (review.ts).
 *   - Bounded body size (413), request and inference timeouts (503), a concurrency limit checked
 *     before the body is read (429 with Retry-After, no queue), graceful shutdown.
 *   - pino logs (never bodies), /healthz, OpenAPI at /openapi.json, Prometheus at /metrics.
 *   - With `upload` (a device identity): the device certificate is renewed at two thirds of its
 *     lifetime (renewal.ts) and the agent's security events go to its signed journal, forwarded to
 *     the control plane (agent-journal.ts).
 *   - With `tamper`: a locked device does not start; a tamper finding locks it (tamper-wiring.ts).
 *
 * This file is the start-up wiring (what is opened, in which order, and closed in reverse) and the
 * closer; the journal, renewer, reporter and review queue are built in fleet-parts.ts (shared with
 * report-only.ts), listening is serve-http.ts, the HTTP surface is http-app.ts (one inference
 * request's work: infer-handler.ts), the guarded model and input -> verdict are src/runtime.
 */
import { createHash } from 'node:crypto';
import { readFile, unlink } from 'node:fs/promises';
import { basename } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { EdgeguardError } from '../errors/index.ts';
import { readPublicSigningKey } from '../crypto/index.ts';
import type { LoadedModel } from '../inference/index.ts';
import { openGuardedModel, type GuardedModel } from '../runtime/index.ts';
import type { AgentConfig } from './config.ts';
import { AgentIdentity, type CertificateRenewer } from './renewal.ts';
import type { AgentJournal } from './agent-journal.ts';
import type { ReviewQueue } from './review.ts';
import { buildAgentApp } from './http-app.ts';
import { agentLease, type DeviceLease } from './lease.ts';
import { createAgentMetrics, listen, type AgentMetrics } from './serve-http.ts';
import { ServiceLock, agentTamperGuard, openTamperKeyStore, refuseIfLocked } from './tamper-wiring.ts';
import type { KeyStore } from '../keystore/index.ts';
import { ServedRuntime } from './served-runtime.ts';
import { DirectorPoller, SlotWatcher, journalOutcomes, servedModels } from './update.ts';
import type { TamperGuard } from '../tamper/index.ts';
import {
  Opened,
  healthOf,
  openIdentityAndJournal,
  openReviewQueue,
  startRenewer,
  startReporter,
  type FleetParts,
  type StartAgentOptions,
} from './fleet-parts.ts';

export { buildAgentApp, type BuildAgentAppOptions } from './http-app.ts';
export type { InferResponse } from './infer-handler.ts';
export type { StartAgentOptions } from './fleet-parts.ts';

/** The models and the guard the agent serves (src/runtime). */
export type AgentRuntime = GuardedModel;

/** Load the models (in memory) and build the guard, as the config says; `store`: the device key store, already open. */
export async function loadAgentRuntime(configured: AgentConfig, store?: KeyStore): Promise<AgentRuntime> {
  // With update:, the active release slot's package serves in place of models.primary.
  const { config } = await servedModels(configured, store);
  return openGuardedModel({
    models: config.models,
    publicKeys: await Promise.all(config.trust.publicKeys.map((p) => readPublicSigningKey(p))),
    contentKey: store && 'device' in config.contentKey ? { ...config.contentKey, store } : config.contentKey,
    guard: config.guard,
    profile: config.guard.profile,
    executionProviders: config.runtime.executionProviders,
  });
}

export interface RunningAgent {
  app: FastifyInstance;
  /** What serves now (after a release switch, the new models). */
  readonly runtime: AgentRuntime;
  served: ServedRuntime;
  /** With update: the watcher of the active release slot (check() looks now). */
  slots?: SlotWatcher;
  metrics: AgentMetrics;
  review?: ReviewQueue;
  /** The device identity of `upload`, its certificate renewal and the audit journal. */
  identity?: AgentIdentity;
  renewer?: CertificateRenewer;
  journal?: AgentJournal;
  /** With `tamper`: the sensors and the response (its report once it fired). */
  tamper?: TamperGuard;
  /** The lease on serving, when `lease.enabled`. */
  lease?: DeviceLease;
  /** http://127.0.0.1:PORT, or unix:PATH */
  url: string;
  port?: number;
  socket?: string;
  /** Graceful shutdown; `reason` goes into the journal's agent.stopped event. */
  close(reason?: string): Promise<void>;
}

/** SHA-256 of the resolved configuration as JSON with sorted keys: which configuration ran. */
export function configDigest(config: AgentConfig): string {
  const sorted = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sorted)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, sorted((v as Record<string, unknown>)[k])]),
          )
        : v;
  return createHash('sha256')
    .update(JSON.stringify(sorted(config)))
    .digest('hex');
}

async function fileDigest(path: string | undefined): Promise<string | undefined> {
  if (!path) return undefined;
  return createHash('sha256')
    .update(await readFile(path).catch(() => Buffer.alloc(0)))
    .digest('hex');
}

/** What startAgent opens: the fleet-facing parts (fleet-parts.ts), the review queue and what serves. */
export interface AgentParts extends FleetParts {
  review?: ReviewQueue | undefined;
  runtime: AgentRuntime;
  served?: ServedRuntime | undefined;
  slots?: SlotWatcher | undefined;
  director?: DirectorPoller | undefined;
  tamper?: TamperGuard | undefined;
}

/** Load everything, listen, and return a handle whose close() shuts down gracefully. */
export async function startAgent(config: AgentConfig, o: StartAgentOptions = {}): Promise<RunningAgent> {
  const startedAt = Date.now();
  const metrics = createAgentMetrics();
  const opened = new Opened();
  const lock = new ServiceLock();
  let parts: AgentParts;
  let app: FastifyInstance;
  let store: KeyStore | undefined;
  await refuseIfLocked(config.stateDir!);
  try {
    store = await openTamperKeyStore(config);
    parts = await openParts(config, o, metrics, opened, store);
    parts.served = new ServedRuntime(parts.runtime);
    journalLoadedModels(parts.journal, parts.runtime);
    parts.renewer = startRenewer(config, o, metrics, parts);
    if (parts.renewer) opened.push(() => parts.renewer!.close());
    parts.tamper = await startTamperGuard(config, o, store, lock, parts, opened);
    if (config.lease.enabled && parts.identity)
      parts.lease = agentLease({ ...config.lease, log: o.logger }, parts.identity, () => parts.served!.release());
    if (config.attestation.enabled && parts.identity) parts.reporter = await startReporter(config, parts, o.logger);
    ({ app } = await buildAgentApp(config, parts.served, {
      logger: o.logger,
      review: parts.review,
      metrics,
      ...(parts.journal ? { journal: parts.journal } : {}),
      health: () => healthOf(parts),
      lock,
      ...(parts.lease ? { refusal: () => parts.lease!.refusal() } : {}),
    }));
  } catch (e) {
    await opened.closeAll();
    throw e;
  }
  let where: { url: string; port?: number };
  try {
    where = await listen(app, config);
  } catch (e) {
    await app.close().catch(() => undefined);
    await opened.closeAll();
    throw e;
  }
  await journalStarted(config, parts);
  if (config.update) parts.slots = await startSlotWatcher(config, store, parts, o.logger);
  if (config.update?.director?.intervalMs && parts.identity) {
    const slots = parts.slots!;
    parts.director = new DirectorPoller(config, store, parts.identity, () => slots.check(), o.logger);
    parts.director.start();
  }
  parts.review?.start();
  parts.renewer?.start();
  parts.journal?.start();
  parts.lease?.start();
  parts.reporter?.start();
  const socket = config.listen.socket;
  const served = parts.served!;
  return {
    app,
    get runtime() {
      return served.current;
    },
    served,
    ...(parts.slots ? { slots: parts.slots } : {}),
    metrics,
    review: parts.review,
    ...(parts.identity ? { identity: parts.identity } : {}),
    ...(parts.renewer ? { renewer: parts.renewer } : {}),
    ...(parts.journal ? { journal: parts.journal } : {}),
    ...(parts.tamper ? { tamper: parts.tamper } : {}),
    ...(parts.lease ? { lease: parts.lease } : {}),
    url: where.url,
    ...(where.port !== undefined ? { port: where.port } : {}),
    ...(socket ? { socket } : {}),
    close: closer(config, app, parts, startedAt, o.logger),
  };
}

/** After the key store and the models, before listening: a finding from here on locks the device. */
async function startTamperGuard(
  config: AgentConfig,
  o: StartAgentOptions,
  store: KeyStore | undefined,
  lock: ServiceLock,
  { served, journal, identity }: AgentParts,
  opened: Opened,
): Promise<TamperGuard | undefined> {
  if (!store || !config.tamper) return undefined;
  const tamper = agentTamperGuard({
    config: config.tamper,
    stateDir: config.stateDir!,
    store,
    lock,
    runtime: served!,
    journal,
    deviceId: identity?.deviceId,
    log: o.logger,
  });
  opened.push(() => tamper.stop());
  await tamper.start();
  return tamper;
}

/** Identity, journal, review queue and models, in that order (each may record to the journal). */
async function openParts(
  config: AgentConfig,
  o: StartAgentOptions,
  metrics: AgentMetrics,
  opened: Opened,
  store: KeyStore | undefined,
): Promise<AgentParts> {
  const { identity, journal } = await openIdentityAndJournal(config, metrics, o.logger, opened);
  let review: ReviewQueue | undefined;
  if (config.review.enabled) {
    review = await openReviewQueue(config, o, metrics, identity, journal);
    opened.push(() => review!.close());
  }
  let runtime: AgentRuntime;
  try {
    runtime = await loadAgentRuntime(config, store);
  } catch (e) {
    const code = e instanceof EdgeguardError ? e.code : 'EG_INTERNAL';
    journal?.record('model.load_failed', 'failure', { name: basename(config.models.primary).slice(0, 200), code });
    throw e;
  }
  opened.push(() => runtime.release());
  return { identity, journal, review, runtime };
}

/** One model.loaded event per distinct package. */
function journalLoadedModels(journal: AgentJournal | undefined, runtime: AgentRuntime): void {
  if (!journal) return;
  const seen = new Set<LoadedModel>();
  for (const m of [runtime.primary, runtime.ensemble, runtime.fallback]) {
    if (!m || seen.has(m)) continue;
    seen.add(m);
    journal.record('model.loaded', 'success', {
      modelSha256: m.provenance.headerSha256,
      name: m.metadata.name,
      version: m.metadata.version,
      signerKeyId: m.provenance.signedBy,
      keyProvider: runtime.key.provider,
    });
  }
}

/**
 * With update:, a pointer switch (an install by `edgeguard agent update`) loads the new slot's
 * models beside the served ones and swaps; install outcomes go to the journal.
 */
async function startSlotWatcher(
  config: AgentConfig,
  store: KeyStore | undefined,
  parts: AgentParts,
  log: Logger | undefined,
): Promise<SlotWatcher> {
  const dir = config.update!.dir!;
  const journalReports = async () => {
    if (parts.journal && parts.identity) await journalOutcomes(dir, parts.journal, parts.identity.deviceId);
  };
  await journalReports().catch((e: unknown) => log?.error({ err: e }, 'could not journal the install reports'));
  const watcher = new SlotWatcher(
    dir,
    config.update!.watchIntervalMs,
    async () => {
      try {
        const next = await loadAgentRuntime(config, store);
        journalLoadedModels(parts.journal, next);
        await parts.served!.swap(next);
        log?.info({ version: next.primary.metadata.version }, 'serving the switched release');
      } finally {
        await journalReports();
      }
    },
    log,
  );
  await watcher.start();
  return watcher;
}

async function journalStarted(config: AgentConfig, { journal, runtime }: AgentParts): Promise<void> {
  if (!journal) return;
  const profile = await fileDigest(config.guard.profile);
  journal.record('agent.started', 'success', {
    configSha256: configDigest(config),
    ...(profile ? { guardProfileSha256: profile } : {}),
    keyProvider: runtime.key.provider,
    pid: process.pid,
  });
}

/** Graceful shutdown, once: drain HTTP (forced after shutdownGraceMs), then stop and release in reverse. */
function closer(
  config: AgentConfig,
  app: FastifyInstance,
  { identity, journal, review, renewer, lease, reporter, served, slots, director, tamper }: AgentParts,
  startedAt: number,
  log: Logger | undefined,
): (reason?: string) => Promise<void> {
  let closing: Promise<void> | undefined;
  return (reason = 'shutdown') => {
    closing ??= (async () => {
      const force = setTimeout(() => app.server.closeAllConnections(), config.limits.shutdownGraceMs);
      force.unref();
      try {
        await app.close();
      } finally {
        clearTimeout(force);
        await tamper?.stop();
        await director?.stop();
        await slots?.stop();
        lease?.stop();
        reporter?.stop();
        await renewer?.close();
        await review?.close();
        journal?.record('agent.stopped', 'success', {
          reason: reason.slice(0, 2000),
          uptimeS: Math.max(0, Math.floor((Date.now() - startedAt) / 1000)),
        });
        await journal?.close().catch((e: unknown) => log?.error({ err: e }, 'could not close the audit journal'));
        identity?.close();
        await served!.release();
        if (config.listen.socket) await unlink(config.listen.socket).catch(() => undefined);
      }
    })();
    return closing;
  };
}
