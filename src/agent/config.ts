/**
 * The agent's configuration (`agent.yaml`), validated with zod; unknown keys are refused so a typo
 * is an error, not a silently ignored setting. Relative paths are resolved against the config
 * file's directory. Every key is documented in the README ("Inference service").
 *
 *   listen:   { host: 127.0.0.1, port: 8480 }        # or { socket: /run/edgeguard/agent.sock }
 *   limits:   { bodyBytes: 1048576, concurrency: 4, requestTimeoutMs: 10000, inferenceTimeoutMs: 5000, connectionRate: 100 }
 *   trust:    { publicKeys: [publisher.pub] }
 *   contentKey: { file: model.key }                   # or { wrapped: model.key.wrapped, device: device/ }
 *   models:   { primary: mnist.egm, ensemble: mnist-cnn.egm, fallback: mnist-cnn.egm }
 *   guard:    { profile: profile.json, confidence: { threshold: 0.85 }, ... }   # src/guard config
 *   probing:  { budget: { capacity: 300, refillPerSecond: 10 }, nearDuplicates: { history: 32, tolerance: 0.01, neighbours: 8 }, blockMs: 60000 }
 *   runtime:  { executionProviders: [cpu] }           # or cuda, tensorrt, openvino where the build has them
 *   review:   { publicKey: review.pub, spool: { dir: spool, maxItems: 1000, maxBytes: 67108864 } }
 *   upload:   { device: device/ }                   # enrolled device dir; or { server, ca, cert, key }
 *   renewal:  { enabled: true, maxSleepMs: 3600000 } # renew the device certificate at 2/3 of its life
 *   journal:  { path: audit.journal, forwardIntervalMs: 10000 }   # signed local audit journal, forwarded
 *   metrics:  { enabled: true }
 *   openapi:  { enabled: true }
 *   log:      { level: info }
 *   tamper:   { sensors: [...] }                   # src/tamper: sensors that lock the device (needs contentKey.device)
 *   stateDir: device/                             # where tamper.lock.json lives; default: the device directory
 *   update:   { metadataUrl, targetsUrl, target, firmware: { command: [rauc, install, '{path}'] } }  # A/B releases
 *             # or { director: { keys: [director.pub] } }: the control plane's director assigns (needs upload)
 */
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_EVENT_LOG_PATH } from './attestation.ts';
import { checkConfig, parseYamlText } from '../config/index.ts';
import { FILE_CAPS, readBoundedText } from '../errors/index.ts';
import { guardConfigSchema, type GuardConfig } from '../guard/index.ts';
import { egressConfigSchema } from '../harden/index.ts';
import { tamperConfigSchema } from '../tamper/index.ts';
import { DEFAULT_FLOOR_NV_INDEX } from '../release/floor.ts';

const path = z.string().min(1).max(4096);
const installerCommand = z.array(z.string().min(1).max(4096)).min(1).max(64);

export const agentConfigSchema = z
  .object({
    listen: z
      .object({
        /** Address to bind; loopback by default so only local clients reach the service. */
        host: z.string().min(1).max(255).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8480),
        /** A unix socket path instead of host/port (mode 0660). */
        socket: path.optional(),
      })
      .strict()
      .prefault({}),
    limits: z
      .object({
        /** Largest request body accepted (bytes); larger ones get 413. */
        bodyBytes: z
          .number()
          .int()
          .min(1024)
          .max(64 * 1024 * 1024)
          .default(1024 * 1024),
        /**
         * Bytes of large bodies (above 64 KiB) read at once, reserved by Content-Length before the
         * body is read; a large request that does not fit waits unread (up to requestTimeoutMs,
         * then 429 with its connection closed). Small bodies are never counted. Default: four
         * times bodyBytes.
         */
        bodyBytesInFlight: z
          .number()
          .int()
          .min(64 * 1024)
          .max(1024 * 1024 * 1024)
          .optional(),
        /** Requests to /v1/infer processed at once; more get 429 at once (no queue). */
        concurrency: z.number().int().min(1).max(1024).default(4),
        /** Time to receive a whole request (headers and body), ms. */
        requestTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
        /** Time for decoding, the guard and the models of one request, ms; then 503. */
        inferenceTimeoutMs: z.number().int().min(10).max(600_000).default(5_000),
        /**
         * New connections handed to HTTP per second (a token bucket); more wait, accepted but
         * unread, for up to requestTimeoutMs, first come first served. Connections already open
         * (keep-alive) are never held back. Bounds what a client reconnecting as fast as it can
         * costs the agent.
         */
        connectionRate: z.number().int().min(1).max(1_000_000).default(100),
        /** New connections admitted at once after a quiet spell. Default: connectionRate. */
        connectionBurst: z.number().int().min(1).max(1_000_000).optional(),
        /** Idle keep-alive connections are closed after this long, ms. */
        keepAliveTimeoutMs: z.number().int().min(100).max(600_000).default(5_000),
        /** On shutdown, wait this long for requests in flight, ms. */
        shutdownGraceMs: z.number().int().min(0).max(600_000).default(10_000),
      })
      .strict()
      .prefault({}),
    trust: z
      .object({
        /** Publisher public keys (PEM); a package must be signed by one of them. */
        publicKeys: z.array(path).min(1).max(32),
      })
      .strict(),
    contentKey: z.union([z.object({ file: path }).strict(), z.object({ wrapped: path, device: path }).strict()]),
    models: z
      .object({
        primary: path,
        /** A second model of another architecture (the ensemble member). */
        ensemble: path.optional(),
        /** Answers flagged inputs; defaults to the ensemble model. */
        fallback: path.optional(),
      })
      .strict(),
    guard: guardConfigSchema.prefault({}),
    /**
     * Per-client probing defence of POST /v1/infer (src/guard/probing.ts); a client is its TLS
     * certificate's subject when it has one, else its address. Refusals are 429 and journaled.
     */
    probing: z
      .object({
        enabled: z.boolean().default(true),
        /** Token bucket per client: a burst of `capacity` queries, then `refillPerSecond`. */
        budget: z
          .object({
            capacity: z.number().int().min(1).max(1_000_000).default(300),
            refillPerSecond: z.number().positive().max(100_000).default(10),
          })
          .strict()
          .prefault({}),
        /** `neighbours` of the client's last `history` inputs within `tolerance` (not identical): probing. */
        nearDuplicates: z
          .object({
            enabled: z.boolean().default(true),
            history: z.number().int().min(2).max(1024).default(32),
            /** Mean absolute difference of the inputs' 64-value sketches, in the input's units (0..1 for images). */
            tolerance: z.number().min(0).max(1e6).default(0.01),
            neighbours: z.number().int().min(1).max(1023).default(8),
          })
          .strict()
          .refine((d) => d.neighbours < d.history, {
            message: 'neighbours must be smaller than history',
            path: ['neighbours'],
          })
          .prefault({}),
        /** How long a client caught probing is refused, and at most one event per client per this long, ms. */
        blockMs: z.number().int().min(1000).max(86_400_000).default(60_000),
        /** Clients remembered (least recently seen forgotten first). */
        maxClients: z.number().int().min(1).max(1_000_000).default(10_000),
      })
      .strict()
      .prefault({}),
    runtime: z
      .object({
        /**
         * ONNX Runtime execution providers by preference; names are checked against the installed
         * onnxruntime-node when the models load (an unknown or absent one is EG_CONFIG).
         */
        executionProviders: z.array(z.string().min(1).max(32)).min(1).max(4).default(['cpu']),
      })
      .strict()
      .prefault({}),
    review: z
      .object({
        enabled: z.boolean().default(true),
        /** The operators' review public key (X25519 SPKI PEM from `edgeguard review keygen`). */
        publicKey: path.optional(),
        /** Which verdicts send the input to review. */
        verdicts: z
          .array(z.enum(['flag', 'reject']))
          .min(1)
          .max(2)
          .default(['flag']),
        spool: z
          .object({
            dir: path.default('review-spool'),
            maxItems: z.number().int().min(1).max(1_000_000).default(1000),
            maxBytes: z
              .number()
              .int()
              .min(4096)
              .max(64 * 1024 * 1024 * 1024)
              .default(64 * 1024 * 1024),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    upload: z
      .union([
        z
          .object({
            /** An enrolled device directory (`edgeguard agent enroll`): its server, pinned CA and TLS key (unwrapped by the key store). */
            device: path,
            intervalMs: z.number().int().min(100).max(3_600_000).default(10_000),
          })
          .strict(),
        z
          .object({
            /** Control plane URL (https://HOST:PORT); sealed review items are sent there. */
            server: z.string().url(),
            /** Fleet CA (PEM), device certificate chain and key (PEM files) for mutual TLS. */
            ca: path,
            cert: path,
            key: path,
            intervalMs: z.number().int().min(100).max(3_600_000).default(10_000),
          })
          .strict(),
      ])
      .optional(),
    /** Renewal of the device certificate of `upload` (at two thirds of its lifetime). */
    renewal: z
      .object({
        enabled: z.boolean().default(true),
        /** The longest single wait between checks: a long sleep or a clock change is caught within this. */
        maxSleepMs: z
          .number()
          .int()
          .min(100)
          .max(24 * 3_600_000)
          .default(3_600_000),
        /** Retry after a failed renewal: exponential backoff from backoffInitialMs up to backoffMaxMs. */
        backoffInitialMs: z.number().int().min(10).max(3_600_000).default(10_000),
        backoffMaxMs: z
          .number()
          .int()
          .min(10)
          .max(24 * 3_600_000)
          .default(3_600_000),
      })
      .strict()
      .prefault({}),
    /** The lease on serving (needs `upload`): check-ins keep it for the offline grace; revocation ends it. */
    lease: z
      .object({
        enabled: z.boolean().default(false),
        offlineGraceMs: z
          .number()
          .int()
          .min(1000)
          .max(7 * 24 * 3_600_000)
          .default(4 * 3_600_000),
        checkInIntervalMs: z.number().int().min(100).max(3_600_000).default(60_000),
      })
      .strict()
      .prefault({}),
    /** Remote attestation (needs `upload`): quotes by the enrolled AK with the event log, pushed on a schedule. */
    attestation: z
      .object({
        enabled: z.boolean().default(false),
        /** The enrolled device directory holding the AK (default: upload.device). */
        device: path.optional(),
        eventLog: path.default(DEFAULT_EVENT_LOG_PATH),
        intervalMs: z.number().int().min(1000).max(3_600_000).default(60_000),
      })
      .strict()
      .prefault({}),
    /** The device's signed audit journal (needs `upload`: entries are signed with the device certificate key). */
    journal: z
      .object({
        /** Default: on when `upload` is configured. */
        enabled: z.boolean().optional(),
        /** Default: fleet/audit.journal in the device directory (upload.device; it goes with a re-enrollment), else audit.journal next to this file. */
        path: path.optional(),
        forwardIntervalMs: z.number().int().min(50).max(3_600_000).default(10_000),
        /** While the control plane is unreachable, retries back off exponentially up to this. */
        backoffMaxMs: z
          .number()
          .int()
          .min(50)
          .max(24 * 3_600_000)
          .default(300_000),
        /** Records per POST (the server takes at most 1000). */
        batch: z.number().int().min(1).max(1000).default(500),
        /** Events waiting for the disk; beyond this new events are dropped (counted, logged). */
        maxPending: z.number().int().min(16).max(1_000_000).default(10_000),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({ enabled: z.boolean().default(true) })
      .strict()
      .prefault({}),
    openapi: z
      .object({ enabled: z.boolean().default(true) })
      .strict()
      .prefault({}),
    /** Signed releases (`edgeguard agent update`): the TUF repository, A/B slots in `dir`, installers per kind (README, "Updates"). */
    update: z
      .object({
        /** A/B slots (releases/), the software anti-rollback file, hand-off directories. Default: stateDir. */
        dir: path.optional(),
        /** The repository's metadata/ and targets/ URLs (any static host, or the control plane's /v1/tuf/); not with director. */
        metadataUrl: z.string().url().optional(),
        targetsUrl: z.string().url().optional(),
        /**
         * Director mode: the control plane of `upload` names the release (only while attestation
         * passes), its repository is /v1/tuf/ there; keys are the director's public keys (PEM files,
         * from GET /v1/director/keys), pinned here.
         */
        director: z
          .object({
            keys: z.array(path).min(1).max(8),
            /** A serving agent asks the director this often (ms); absent: only `agent update` asks (run it from a timer). */
            intervalMs: z.number().int().min(100).max(86_400_000).optional(),
          })
          .strict()
          .optional(),
        /** The repository's root.json this device first trusts; copied into DIR/tuf when none is there. */
        trustedRoot: path.optional(),
        /** The package target to install (e.g. mnist/3/mnist.egm); `agent update --target` overrides it. */
        target: z.string().min(1).max(512).optional(),
        /** First TPM NV index of the anti-rollback floor: counters (model, agent, firmware) at +0..+2, baselines at +3. */
        tpmNvIndex: z.number().int().min(0x01000000).max(0x01bffffc).default(DEFAULT_FLOOR_NV_INDEX),
        /** How often a serving agent looks for a switched slot, ms. */
        watchIntervalMs: z.number().int().min(100).max(3_600_000).default(5000),
        /** Installer commands as argv (no shell); "{path}" becomes the verified payload's path. */
        firmware: z.object({ command: installerCommand }).strict().optional(),
        agent: z.object({ command: installerCommand }).strict().optional(),
      })
      .strict()
      .optional(),
    /** What the device talks to, for `edgeguard harden egress` (docs/formats.md). */
    egress: egressConfigSchema.optional(),
    /** Physical tamper sensors and the response that locks the device (docs/formats.md, "Tamper configuration"). */
    tamper: tamperConfigSchema.optional(),
    /** Where the tamper lock state lives. Default: the device directory (contentKey.device, else upload.device), else next to this file. */
    stateDir: path.optional(),
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.journal.enabled === true && !c.upload) {
      ctx.addIssue({
        code: 'custom',
        path: ['journal', 'enabled'],
        message:
          'the journal is signed with the device certificate key, so it needs upload (an enrolled device or its certificate and key)',
      });
    }
    if (c.tamper?.enabled && 'file' in c.contentKey) {
      ctx.addIssue({
        code: 'custom',
        path: ['tamper'],
        message:
          'tamper detection locks the device key store, so it needs a device-wrapped content key (contentKey: { wrapped, device })',
      });
    }
    if (c.attestation.enabled && !c.attestation.device && !(c.upload && 'device' in c.upload))
      ctx.addIssue({
        code: 'custom',
        path: ['attestation', 'device'],
        message:
          'attestation quotes with the AK of an enrolled device directory: set attestation.device or upload.device',
      });
    if (c.update?.director && !c.upload)
      ctx.addIssue({
        code: 'custom',
        path: ['update', 'director'],
        message:
          'the director is asked with the device identity, so it needs upload (an enrolled device or its certificate and key)',
      });
    if (c.update && !c.update.director && !(c.update.metadataUrl && c.update.targetsUrl))
      ctx.addIssue({
        code: 'custom',
        path: ['update', 'metadataUrl'],
        message:
          'update needs the repository (metadataUrl and targetsUrl) or the control plane director (director.keys)',
      });
    if (c.update?.director && (c.update.metadataUrl || c.update.targetsUrl || c.update.target))
      ctx.addIssue({
        code: 'custom',
        path: ['update', 'director'],
        message: 'with update.director the director names the release: remove metadataUrl, targetsUrl and target',
      });
    if (c.lease.enabled && !c.upload)
      ctx.addIssue({
        code: 'custom',
        path: ['lease', 'enabled'],
        message:
          'the lease is kept by check-ins with the control plane, so it needs upload (an enrolled device or its certificate and key)',
      });
    if (c.review.enabled && !c.review.publicKey) {
      ctx.addIssue({
        code: 'custom',
        path: ['review', 'publicKey'],
        message:
          'review is enabled but has no publicKey (make one with `edgeguard review keygen`, or set review.enabled: false)',
      });
    }
  });

export type AgentConfig = z.infer<typeof agentConfigSchema>;
export type AgentConfigInput = z.input<typeof agentConfigSchema>;

/** The tamper lock lives with the device's keys, so re-provisioning that directory also clears it. */
function defaultStateDir(c: AgentConfig): string {
  if ('device' in c.contentKey) return c.contentKey.device;
  if (c.upload && 'device' in c.upload) return c.upload.device;
  return '.';
}

/** Resolve every path of the config against `baseDir`. */
function resolvePaths(c: AgentConfig, baseDir: string): AgentConfig {
  const r = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const rOpt = (p: string | undefined) => (p === undefined ? undefined : r(p));
  const guard: GuardConfig = { ...c.guard, ...(c.guard.profile ? { profile: r(c.guard.profile) } : {}) };
  return {
    ...c,
    listen: { ...c.listen, ...(c.listen.socket ? { socket: r(c.listen.socket) } : {}) },
    trust: { publicKeys: c.trust.publicKeys.map(r) },
    contentKey:
      'file' in c.contentKey
        ? { file: r(c.contentKey.file) }
        : { wrapped: r(c.contentKey.wrapped), device: r(c.contentKey.device) },
    models: { primary: r(c.models.primary), ensemble: rOpt(c.models.ensemble), fallback: rOpt(c.models.fallback) },
    guard,
    review: {
      ...c.review,
      publicKey: rOpt(c.review.publicKey),
      spool: { ...c.review.spool, dir: r(c.review.spool.dir) },
    },
    journal: {
      ...c.journal,
      ...(c.journal.path
        ? { path: r(c.journal.path) }
        : c.upload && 'device' in c.upload
          ? { path: r(join(c.upload.device, 'fleet', 'audit.journal')) }
          : { path: r('audit.journal') }),
    },
    stateDir: r(c.stateDir ?? defaultStateDir(c)),
    ...(c.tamper ? { tamper: { ...c.tamper, sysfsRoot: r(c.tamper.sysfsRoot) } } : {}),
    ...(c.update
      ? {
          update: {
            ...c.update,
            dir: r(c.update.dir ?? c.stateDir ?? defaultStateDir(c)),
            ...(c.update.trustedRoot ? { trustedRoot: r(c.update.trustedRoot) } : {}),
            ...(c.update.director ? { director: { ...c.update.director, keys: c.update.director.keys.map(r) } } : {}),
          },
        }
      : {}),
    attestation: {
      ...c.attestation,
      eventLog: r(c.attestation.eventLog),
      ...(c.attestation.device ? { device: r(c.attestation.device) } : {}),
    },
    ...(c.upload
      ? {
          upload:
            'device' in c.upload
              ? { ...c.upload, device: r(c.upload.device) }
              : { ...c.upload, ca: r(c.upload.ca), cert: r(c.upload.cert), key: r(c.upload.key) },
        }
      : {}),
  };
}

export function agentConfig(value: unknown, baseDir: string, where = 'the agent configuration'): AgentConfig {
  return resolvePaths(checkConfig(agentConfigSchema, value, where), baseDir);
}

export function parseAgentConfigYaml(text: string, baseDir: string, where = 'the agent configuration'): AgentConfig {
  return agentConfig(parseYamlText(text, where), baseDir, where);
}

export async function loadAgentConfig(file: string): Promise<AgentConfig> {
  const text = await readBoundedText(file, FILE_CAPS.config, 'read the agent configuration');
  return parseAgentConfigYaml(text, dirname(resolve(file)), file);
}
