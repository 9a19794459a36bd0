/**
 * NV index operations of the TPM client (TCG TPM 2.0 Library Part 1, "NV Indices"; Part 3, 31), as
 * tpm2-tools steps run by the client's step runner (runner.ts): TpmClient exposes them as `tpm.nv`.
 * The raw structures and the TPM2_NV_ReadPublic command they send are parsed in nv.ts.
 *
 * Reads (counterRead, read) go through an HMAC session salted with the SRK (whose Name is checked
 * against the one pinned at provisioning), not a plain password: an active interposer on the TPM
 * bus does not know the session key, so it cannot forge the response HMAC that covers the returned
 * data (ESAPI refuses the answer: EG_TAMPERED), nor the command HMAC that covers the index's Name
 * (the TPM refuses the command). Given the Name the caller checked (from readPublic, which is sent
 * raw and covered by nothing), the read's cpHash is compared with the one that Name gives, so a
 * successful read also proves the TPM's index has that Name. Increments, definitions and
 * readPublic alone are not in such a session.
 *
 * A counter index (TPM_NT_COUNTER) only grows: TPM2_NV_Increment adds one, and a counter defined
 * again after it was undefined starts, at its first increment, at the largest value any counter
 * of this TPM ever held.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { EdgeguardError, isEdgeguardError } from '../errors/index.ts';
import { nvReadCpHash, nvReadPublicCommand, parseNvReadPublicResponse, type NvAuth, type NvPublic } from './nv.ts';
import { keyPolicySession, prepareKeyPolicy, type KeyPolicy, type Step } from './policy-session.ts';

export type { NvAuth };

/** tpm2-tools attributes of the counters counterDefine makes. */
export const NV_COUNTER_ATTRIBUTES = 'nt=counter|ownerread|ownerwrite|authread|authwrite|no_da';

/** What the NV operations need from the client: its serialized, retried step runner and its SRK check. */
export interface NvSteps {
  op<T>(action: string, fn: (step: Step) => Promise<T>): Promise<T>;
  createSrk(s: Step): Promise<Buffer>;
}

export class TpmNv {
  private readonly steps: NvSteps;

  constructor(steps: NvSteps) {
    this.steps = steps;
  }

  /**
   * TPM2_NV_ReadPublic, sent raw (nv.ts): the index's public area, or undefined when it is not
   * defined. No session covers this answer; a read given the Name it reports (counterRead's and
   * read's `name`) fails unless the TPM's index has that Name.
   */
  async readPublic(index: number): Promise<NvPublic | undefined> {
    const out = await this.steps.op(`read the public area of NV index ${nvHandle(index)}`, (s) =>
      s.tool('tpm2_send', [], { stdin: nvReadPublicCommand(index) }),
    );
    return parseNvReadPublicResponse(out, index);
  }

  /**
   * The counter's value; undefined when the index is not defined, 0 before its first increment.
   * `auth`: the owner hierarchy (counters defined before the floor's baselines) or the index's own
   * empty authValue (counters counterDefine makes), which still works after an owner password is set.
   * `name`: the index's Name as the caller checked it; the read fails unless the TPM's index has it.
   */
  async counterRead(index: number, auth: NvAuth = 'owner', name?: Uint8Array): Promise<bigint | undefined> {
    try {
      return await this.steps.op('read the NV counter', async (s) => {
        const out = await this.sessionRead(s, index, auth, 8, name);
        if (out.length !== 8)
          throw new EdgeguardError('EG_TPM', `NV index ${nvHandle(index)} is not an 8-byte counter.`);
        return out.readBigUInt64BE(0);
      });
    } catch (e) {
      const rc = isEdgeguardError(e) ? String(e.details?.tpmRcName ?? '') : '';
      if (/NV_UNINITIALIZED/.test(rc)) return 0n;
      if (/HANDLE/.test(rc)) return undefined;
      throw e;
    }
  }

  /**
   * Define a counter index readable and incrementable with the owner hierarchy or the index's
   * empty authValue (TPM_NT_COUNTER | OWNERREAD | OWNERWRITE | AUTHREAD | AUTHWRITE | NO_DA):
   * anyone who reaches the TPM can only make it grow; undefining it takes owner authorization.
   */
  async counterDefine(index: number): Promise<void> {
    await this.steps.op('define the NV counter', (s) =>
      s.tool('tpm2_nvdefine', [nvHandle(index), '-C', 'o', '-s', '8', '-a', NV_COUNTER_ATTRIBUTES]),
    );
  }

  /** TPM2_NV_Increment; returns the new value (read back as counterRead does, without a Name to check). */
  async counterIncrement(index: number, auth: NvAuth = 'owner'): Promise<bigint> {
    await this.steps.op('increment the NV counter', (s) =>
      s.tool('tpm2_nvincrement', [nvHandle(index), ...nvAuthArgs(auth)]),
    );
    return (await this.counterRead(index, auth)) ?? 0n;
  }

  /**
   * TPM2_NV_Read of `size` bytes of an ordinary index, authorized by its own (empty) authValue;
   * `name` as for counterRead.
   */
  async read(index: number, size: number, name?: Uint8Array): Promise<Buffer> {
    return this.steps.op(`read NV index ${nvHandle(index)}`, (s) => this.sessionRead(s, index, 'index', size, name));
  }

  /**
   * TPM2_NV_Read under an HMAC session salted with the (pinned) SRK: ESAPI checks the response
   * HMAC, and a TPM that answers at all checked the command HMAC over the cpHash, which holds the
   * index's Name as ESAPI read it; with `name`, that cpHash must be the one `name` gives.
   */
  private async sessionRead(s: Step, index: number, auth: NvAuth, size: number, name?: Uint8Array): Promise<Buffer> {
    await this.steps.createSrk(s);
    await s.tool('tpm2_startauthsession', ['-Q', '--hmac-session', '-S', 'hmac.ctx', '-c', 'srk.ctx'], {
      action: 'start a salted HMAC session',
    });
    // --cphash alone would make tpm2_nvread compute the cpHash and NOT send the command; with
    // --rphash as well it sends it and records both (tpm2_nvread(1)). Should a tool version stop
    // sending, no data comes back and the caller's length checks refuse it.
    const hashes = name ? ['--cphash', 'cp.bin', '--rphash', 'rp.bin'] : [];
    const args = [nvHandle(index), ...nvAuthArgs(auth), '-P', 'session:hmac.ctx', '-s', String(size), ...hashes];
    const out = await s.tool('tpm2_nvread', args);
    await s.tool('tpm2_flushcontext', ['hmac.ctx'], { action: 'flush the HMAC session' });
    // cp.bin is a TPM2B_DIGEST.
    if (name && !(await readFile(s.file('cp.bin'))).subarray(2).equals(nvReadCpHash(auth, name, size))) {
      out.fill(0);
      throw new EdgeguardError(
        'EG_TAMPERED',
        `the TPM read NV index ${nvHandle(index)} under another Name than the one checked just before: the index was re-created in between, or something between this process and the TPM answers for it. The value is not used; do not install updates on this device until it is checked.`,
        { details: { index: nvHandle(index) } },
      );
    }
    return out;
  }

  /** TPM2_NV_DefineSpace (owner hierarchy) of an ordinary index with `attributes` (tpm2-tools syntax) and authPolicy. */
  async define(index: number, size: number, attributes: string, authPolicy: Uint8Array): Promise<void> {
    await this.steps.op(`define NV index ${nvHandle(index)}`, async (s) => {
      await writeFile(s.file('policy.bin'), authPolicy);
      await s.tool('tpm2_nvdefine', [
        nvHandle(index),
        '-C',
        'o',
        '-s',
        String(size),
        '-a',
        attributes,
        '-L',
        'policy.bin',
      ]);
    });
  }

  /** TPM2_NV_UndefineSpace with the owner hierarchy's (empty) authorization. */
  async undefine(index: number): Promise<void> {
    await this.steps.op(`undefine NV index ${nvHandle(index)}`, (s) =>
      s.tool('tpm2_nvundefine', [nvHandle(index), '-C', 'o']),
    );
  }

  /**
   * TPM2_NV_Write of `data` at offset 0 of a POLICYWRITE index, then TPM2_NV_WriteLock (which, with
   * WRITEDEFINE, lasts until the index is undefined), each under a session satisfying `policy`:
   * the session a key with the same authPolicy is used with (policy-session.ts).
   */
  async writeLocked(index: number, data: Uint8Array, policy: KeyPolicy): Promise<void> {
    await this.steps.op(`write NV index ${nvHandle(index)} under the binding key's policy`, async (s) => {
      await writeFile(s.file('nv.bin'), data);
      await prepareKeyPolicy(s, policy);
      await this.steps.createSrk(s);
      const auth = await keyPolicySession(s, policy);
      await s.tool('tpm2_nvwrite', [nvHandle(index), '-i', 'nv.bin', '-P', auth]);
      await s.flush(true);
      await this.steps.createSrk(s);
      const again = await keyPolicySession(s, policy);
      await s.tool('tpm2_nvwritelock', [nvHandle(index), '-P', again]);
    });
  }
}

function nvAuthArgs(auth: NvAuth): string[] {
  // Without -C, tpm2-tools authorizes with the index itself.
  return auth === 'owner' ? ['-C', 'o'] : [];
}

function nvHandle(index: number): string {
  return `0x${index.toString(16)}`;
}
