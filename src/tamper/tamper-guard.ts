/**
 * What the agent holds: the monitor wired to the response, behind one object.
 *
 *   if (await isLocked(stateDir)) refuse to serve (lockedError(await readLockState(stateDir)))
 *   const tamper = new TamperGuard(config.tamper, { actions, tpm, stateDir, deviceId, bindingKey, onLocked });
 *   await tamper.start();            // self-test; may lock at once
 *   ...
 *   await tamper.stop();             // on shutdown
 */
import { EdgeguardError } from '../errors/index.ts';
import type { TamperConfig } from './config.ts';
import { readLockState, lockedError } from './lock-state.ts';
import { TamperMonitor, type TamperFinding } from './monitor.ts';
import { respondToTamper, type TamperResponseOptions, type TamperResponseReport } from './response.ts';

export interface TamperGuardOptions extends Omit<TamperResponseOptions, 'pcr' | 'stepTimeoutMs'> {
  /** The response has finished (every step ran; read report.steps for failures). */
  onLocked(report: TamperResponseReport): void;
  /** failMode alert: a sensor cannot be read. */
  onAlert?(finding: TamperFinding): void;
}

export class TamperGuard {
  private readonly monitor: TamperMonitor;
  private responding: Promise<TamperResponseReport> | undefined;

  constructor(
    private readonly config: TamperConfig,
    private readonly options: TamperGuardOptions,
  ) {
    this.monitor = new TamperMonitor(config, {
      onTamper: (finding) => void this.respond(finding),
      ...(options.onAlert ? { onAlert: options.onAlert } : {}),
    });
  }

  /** The response in progress or done, once a finding has been confirmed. */
  get response(): Promise<TamperResponseReport> | undefined {
    return this.responding;
  }

  /** Refuses to start on a locked device; otherwise self-tests the sensors and starts watching. */
  async start(): Promise<void> {
    const state = await readLockState(this.options.stateDir);
    if (state) throw lockedError(state);
    if (!this.config.enabled) return;
    if (this.config.sensors.length === 0)
      throw new EdgeguardError(
        'EG_CONFIG',
        'tamper detection is enabled but lists no sensors; add some or disable it.',
      );
    await this.monitor.start();
  }

  async stop(): Promise<void> {
    await this.monitor.stop();
    await this.responding;
  }

  private respond(finding: TamperFinding): Promise<TamperResponseReport> {
    this.responding ??= respondToTamper(finding, {
      ...this.options,
      pcr: this.config.pcr,
      stepTimeoutMs: this.config.stepTimeoutMs,
    }).then((report) => {
      this.options.onLocked(report);
      return report;
    });
    return this.responding;
  }
}
