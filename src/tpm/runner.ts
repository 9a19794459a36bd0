/**
 * How the TPM client runs: each operation is a short sequence of tpm2-tools commands in a private
 * temporary directory (mode 0700) that holds only public areas, saved contexts and TPM-encrypted
 * private blobs, never a secret in the clear (client.ts says how secrets come back).
 *
 * swtpm and /dev/tpm0 have no resource manager, so transient objects and sessions that a tool
 * leaves loaded are flushed after each step (`tpm2_flushcontext -t`, `-l`, `-s`); otherwise the TPM
 * soon answers TPM_RC_OBJECT_MEMORY. Operations on one TCTI are serialized within the process.
 * Transient TPM errors (TPM_RC_RETRY, YIELDED, TESTING, PCR_CHANGED, out of object memory) are
 * retried a few times with backoff, after a flush. Every operation that loads under the SRK
 * recreates it and checks its name against the one pinned at provisioning.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EdgeguardError } from '../errors/index.ts';
import type { Step } from './policy-session.ts';
import { objectName, parseTpm2bPublic } from './public.ts';
import { runTool, TpmToolError } from './tools.ts';

/** The SRK template (TCG "Provisioning Guidance" storage key: RSA-2048, AES-128-CFB, restricted decrypt). */
export const SRK_TEMPLATE = 'rsa2048:null:aes128cfb';

export interface TpmClientOptions {
  /** `device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`, `mssim:...`. */
  tcti: string;
  /** Attempts for transient errors (default 4). */
  attempts?: number;
  /** Flush transient objects and sessions after each step (default: yes unless the TCTI is a resource manager). */
  flush?: boolean;
  /** The SRK name recorded at provisioning; when set, every operation checks it (EG_TPM_WRONG_DEVICE). */
  srkName?: Uint8Array;
}

/** A key as it rests on disk: its public area and its TPM-encrypted private area. */
export interface TpmKeyBlobs {
  /** TPM2B_PUBLIC. */
  public: Buffer;
  /** TPM2B_PRIVATE, encrypted under the parent's seed: useless without this TPM. */
  private: Buffer;
}

const locks = new Map<string, Promise<unknown>>();

/** The plumbing under TpmClient: serialized, retried, flushed tpm2-tools steps. */
export class TpmRunner {
  readonly tcti: string;
  private readonly attempts: number;
  private readonly flushSteps: boolean;
  private readonly srkName: Buffer | undefined;

  constructor(opts: TpmClientOptions) {
    if (!/^[a-z0-9_-]+(:.*)?$/i.test(opts.tcti)) {
      throw new EdgeguardError(
        'EG_CONFIG',
        `"${opts.tcti}" is not a TCTI; use device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321.`,
      );
    }
    this.tcti = opts.tcti;
    this.attempts = opts.attempts ?? 4;
    this.flushSteps = opts.flush ?? !/^(device:\/dev\/tpmrm\d+|tabrmd)/.test(opts.tcti);
    this.srkName = opts.srkName ? Buffer.from(opts.srkName) : undefined;
  }

  // ---- plumbing -------------------------------------------------------------------------------

  /** Run `fn` alone on this TCTI, in a fresh private work directory, retrying transient errors. */
  protected async op<T>(action: string, fn: (step: Step) => Promise<T>): Promise<T> {
    const prev = locks.get(this.tcti) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(() => this.opUnlocked(action, fn));
    locks.set(this.tcti, run);
    try {
      return await run;
    } finally {
      if (locks.get(this.tcti) === run) locks.delete(this.tcti);
    }
  }

  private async opUnlocked<T>(action: string, fn: (step: Step) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const dir = await mkdtemp(join(tmpdir(), 'edgeguard-tpm-'));
      const step: Step = {
        dir,
        file: (name) => join(dir, name),
        tool: (tool, args, opts = {}) =>
          runTool(tool, args, {
            tcti: this.tcti,
            cwd: dir,
            action: opts.action ?? action,
            ...(opts.stdin ? { stdin: opts.stdin } : {}),
          }),
        flush: (sessions = false) => this.flushAll(dir, sessions),
      };
      try {
        const result = await fn(step);
        return result;
      } catch (e) {
        if (e instanceof TpmToolError) {
          const d = e.decoded;
          const transient = d !== undefined && (d.retryable || d.resources);
          if (transient && attempt < this.attempts) {
            await this.flushAll(dir, true);
            await sleep(25 * 2 ** attempt);
            continue;
          }
          throw e.error;
        }
        throw e;
      } finally {
        await this.flushAll(dir, true);
        await rm(dir, { recursive: true, force: true });
      }
    }
  }

  private async flushAll(dir: string, sessions: boolean): Promise<void> {
    if (!this.flushSteps) return;
    const kinds = sessions ? ['-t', '-l', '-s'] : ['-t'];
    for (const k of kinds) {
      try {
        await runTool('tpm2_flushcontext', [k], { tcti: this.tcti, cwd: dir, action: 'flush transient TPM contexts' });
      } catch {
        // Nothing to flush, or the TPM is gone: the next command reports the real problem.
      }
    }
  }

  /**
   * Recreate the SRK from its template (same owner seed, same key) as `srk.ctx`. Its public area as
   * the TPM returned it (the one ESAPI salts sessions to) is checked against the pinned name when
   * the client has one, so a different TPM, or an interposer answering with its own key, is
   * refused before anything is loaded or decrypted.
   */
  protected async createSrk(s: Step): Promise<Buffer> {
    await s.tool(
      'tpm2_createprimary',
      ['-Q', '-C', 'o', '-g', 'sha256', '-G', SRK_TEMPLATE, '-c', 'srk.ctx', '-o', 'srk.pub'],
      { action: 'create the storage root key' },
    );
    await s.flush();
    const name = objectName(parseTpm2bPublic(await readFile(s.file('srk.pub'))));
    if (this.srkName && !name.equals(this.srkName)) {
      throw new EdgeguardError(
        'EG_TPM_WRONG_DEVICE',
        `this TPM's storage root key (${name.toString('hex').slice(0, 16)}…) is not the one recorded at provisioning (${this.srkName.toString('hex').slice(0, 16)}…): a device directory copied from another device cannot be used here, or something sits between this host and its TPM.`,
        { details: { srkName: name.toString('hex'), expected: this.srkName.toString('hex') } },
      );
    }
    return name;
  }

  protected async loadUnderSrk(s: Step, key: TpmKeyBlobs, ctx: string, what: string): Promise<void> {
    await writeFile(s.file(`${ctx}.pub`), key.public);
    await writeFile(s.file(`${ctx}.priv`), key.private);
    await this.createSrk(s);
    await s.tool('tpm2_load', ['-Q', '-C', 'srk.ctx', '-u', `${ctx}.pub`, '-r', `${ctx}.priv`, '-c', ctx], {
      action: `load the ${what}`,
    });
    await s.flush();
  }
}
