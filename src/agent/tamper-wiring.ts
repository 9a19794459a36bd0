/**
 * The agent's side of physical tamper detection (src/tamper; docs/architecture.md "Physical
 * tamper"). A locked device does not start: `agent serve` fails with EG_LOCKED (exit 9) while
 * tamper.lock.json exists. A running agent holds a TamperGuard, started after the key store and
 * the models are open and before it listens, whose actions are:
 *
 *   stopServing         every /v1/ route answers 503 EG_LOCKED, /healthz says `locked`
 *   wipeSecrets         KeyStore.wipe() (content keys zeroed, later unwraps refused) and the ONNX
 *                       Runtime sessions released (the decrypted model buffers were wiped at load)
 *   journal             tamper.detected + device.locked appended and fsynced
 *   notifyControlPlane  the journal forwarded at once, so the control plane revokes the device
 */
import type { Logger } from 'pino';
import type { AuditEvent } from '../audit/index.ts';
import { EdgeguardError } from '../errors/index.ts';
import { TpmKeyStore, openDeviceKeyStore, type KeyStore } from '../keystore/index.ts';
import {
  TamperGuard,
  lockedError,
  readLockState,
  type TamperActions,
  type TamperConfig,
  type TamperResponseReport,
} from '../tamper/index.ts';
import type { AgentConfig } from './config.ts';
import type { AgentJournal } from './agent-journal.ts';
import type { ServedRuntime } from './served-runtime.ts';

/** Whether the service is locked, and the error it answers with. */
export class ServiceLock {
  private lockError: EdgeguardError | undefined;

  error(): EdgeguardError | undefined {
    return this.lockError;
  }

  lock(error: EdgeguardError): void {
    this.lockError = error;
  }
}

/** At start-up, before anything is opened: a locked device (or a damaged lock file) does not serve. */
export async function refuseIfLocked(stateDir: string): Promise<void> {
  const state = await readLockState(stateDir);
  if (state) throw lockedError(state);
}

/** The device key store the content key is unwrapped with, opened once so the response can wipe it. */
export async function openTamperKeyStore(config: AgentConfig): Promise<KeyStore | undefined> {
  if (!config.tamper?.enabled || !('device' in config.contentKey)) return undefined;
  return openDeviceKeyStore(config.contentKey.device);
}

export interface AgentTamperParts {
  config: TamperConfig;
  stateDir: string;
  store: KeyStore;
  lock: ServiceLock;
  /** What serves (after a release switch, the new models): released by the key wipe. */
  runtime: Pick<ServedRuntime, 'release'>;
  journal: AgentJournal | undefined;
  /** The enrolled device's id; a device without `upload` is named by its binding key. */
  deviceId: string | undefined;
  log: Logger | undefined;
}

function tamperActions(p: AgentTamperParts): TamperActions {
  const noJournal = () =>
    new EdgeguardError(
      'EG_CONFIG',
      'this agent has no audit journal (configure upload), so the tamper events stay in the lock state file only.',
    );
  return {
    stopServing: () =>
      p.lock.lock(
        new EdgeguardError(
          'EG_LOCKED',
          'this device is locked by its tamper response; it comes back only through `edgeguard device reprovision`.',
        ),
      ),
    wipeSecrets: async () => {
      p.store.wipe();
      await p.runtime.release();
    },
    journal: async (events: AuditEvent[]) => {
      if (!p.journal) throw noJournal();
      await p.journal.appendNow(events);
    },
    notifyControlPlane: async () => {
      if (!p.journal) throw noJournal();
      await p.journal.forward();
    },
  };
}

/** The guard over the configured sensors, acting on this agent; start() it before listening. */
export function agentTamperGuard(p: AgentTamperParts): TamperGuard {
  const bindingKey = p.store.posture.bindingKey;
  return new TamperGuard(p.config, {
    actions: tamperActions(p),
    tpm: p.store instanceof TpmKeyStore ? p.store.client : undefined,
    stateDir: p.stateDir,
    deviceId: p.deviceId ?? `binding:${bindingKey}`,
    bindingKey,
    onLocked: (report: TamperResponseReport) => {
      p.lock.lock(lockedError(report.lockState));
      const failed = report.steps.filter((s) => !s.ok);
      p.log?.fatal(
        { sensor: report.finding.sensor, totalMs: Math.round(report.totalMs), failed },
        'tamper detected: the device is locked',
      );
    },
    onAlert: (finding) => p.log?.error({ finding }, 'a tamper sensor cannot be read (failMode alert)'),
  });
}
