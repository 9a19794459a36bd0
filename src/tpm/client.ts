/**
 * The TPM 2.0 client: each operation is a short sequence of tpm2-tools commands run in a private
 * temporary directory (mode 0700) that holds only public areas, saved contexts and TPM-encrypted
 * private blobs, never a secret in the clear: unwrapped keys and unsealed data come back on the
 * tool's stdout, into memory: tpm2_rsadecrypt, tpm2_unseal and tpm2_getrandom write raw bytes to
 * stdout when given no -o. (`-o /dev/stdout` does NOT work here: Node's stdio pipes are socketpairs,
 * which cannot be reopened through /proc/self/fd.)
 *
 * swtpm and /dev/tpm0 have no resource manager, so transient objects and sessions that a tool
 * leaves loaded are flushed after each step (`tpm2_flushcontext -t`, `-l`, `-s`); otherwise the TPM
 * soon answers TPM_RC_OBJECT_MEMORY. Operations on one TCTI are serialized within the process.
 * Transient TPM errors (TPM_RC_RETRY, YIELDED, TESTING, PCR_CHANGED, out of object memory) are
 * retried a few times with backoff, after a flush.
 *
 * Key hierarchy (TCG TPM 2.0 Library Part 1, 23 "Protected storage hierarchy"):
 *   owner hierarchy -> SRK (primary, recreated from its template each time: same seed, same key)
 *                      -> binding key (RSA-2048 decrypt, fixedTPM|fixedParent, PolicyPCR)
 *                      -> sealed objects
 *   endorsement hierarchy -> EK (TCG EK template, tpm2_createek) -> AK (restricted RSA signing key)
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EdgeguardError, isEdgeguardError } from '../errors/index.ts';
import {
  DEFAULT_BINDING_PCRS,
  formatPcrSelection,
  parsePcrSelection,
  type PcrSelection,
  type PcrValues,
} from './pcr.ts';
import { objectName, parseTpm2bPublic, type TpmPublic } from './public.ts';
import { runTool, TpmToolError } from './tools.ts';
import { HASH_ALGS } from './constants.ts';

/** The SRK template (TCG "Provisioning Guidance" storage key: RSA-2048, AES-128-CFB, restricted decrypt). */
export const SRK_TEMPLATE = 'rsa2048:null:aes128cfb';
/** The binding key: RSA-2048 decrypt-only, OAEP-SHA256 fixed in the key's scheme. */
export const BINDING_KEY_ALG = 'rsa2048:oaep-sha256:null';
/**
 * fixedTPM|fixedParent: never leaves this TPM; sensitiveDataOrigin: the TPM generated it; decrypt.
 * userWithAuth is CLEAR so every use of the key (RSA_Decrypt is a USER-role command) needs the
 * PCR policy session; adminWithPolicy is CLEAR so TPM2_Certify (ADMIN role) works with the empty
 * authValue, which only lets the key be certified, never used.
 */
export const BINDING_KEY_ATTRIBUTES = 'fixedtpm|fixedparent|sensitivedataorigin|decrypt';
/** Sealed data objects: cannot be duplicated; unsealing needs the policy session. */
const SEAL_ATTRIBUTES = 'fixedtpm|fixedparent';
/** TCG EK Credential Profile 2.0, section 2.2.1.4: the RSA EK certificate's NV index. */
export const EK_CERT_NV_INDEX_RSA = 0x01c00002;

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

export interface BindingKey extends TpmKeyBlobs {
  publicArea: TpmPublic;
  name: Buffer;
  pcrs: PcrSelection;
  /** The authPolicy the TPM computed for the PCR values at creation. */
  policyDigest: Buffer;
  /** The PCR values the policy was computed over. */
  pcrValues: PcrValues;
}

export interface EndorsementKeys {
  /** EK TPM2B_PUBLIC. */
  ekPublic: Buffer;
  /** The AK (restricted RSASSA-SHA256 signing key under the EK). */
  ak: TpmKeyBlobs;
  akName: Buffer;
}

export interface Attestation {
  /** TPMS_ATTEST bytes, exactly as signed. */
  attest: Buffer;
  /** TPMT_SIGNATURE. */
  signature: Buffer;
}

const locks = new Map<string, Promise<unknown>>();

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

export class TpmClient {
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
  private async op<T>(action: string, fn: (step: Step) => Promise<T>): Promise<T> {
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
  private async createSrk(s: Step): Promise<Buffer> {
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

  private async loadUnderSrk(s: Step, key: TpmKeyBlobs, ctx: string, what: string): Promise<void> {
    await writeFile(s.file(`${ctx}.pub`), key.public);
    await writeFile(s.file(`${ctx}.priv`), key.private);
    await this.createSrk(s);
    await s.tool('tpm2_load', ['-Q', '-C', 'srk.ctx', '-u', `${ctx}.pub`, '-r', `${ctx}.priv`, '-c', ctx], {
      action: `load the ${what}`,
    });
    await s.flush();
  }

  /**
   * A policy session satisfied by TPM2_PolicyPCR over `pcrs` (Part 3, 23.7). It is salted with the
   * SRK (`srk.ctx` must be in the step directory) and has the decrypt and encrypt attributes, so the
   * first command parameter (the wrapped key) and the first response parameter (the unwrapped key,
   * the unsealed data) cross the TPM bus AES-CFB encrypted under a session key a passive bus
   * sniffer cannot derive (Part 1, 21 "Session-based encryption").
   */
  private static async pcrPolicySession(s: Step, pcrs: PcrSelection): Promise<string> {
    await s.tool('tpm2_startauthsession', ['-Q', '--policy-session', '-S', 'session.ctx', '-c', 'srk.ctx'], {
      action: 'start a salted policy session',
    });
    await s.tool('tpm2_sessionconfig', ['session.ctx', '--enable-encrypt', '--enable-decrypt'], {
      action: 'enable parameter encryption',
    });
    await s.tool('tpm2_policypcr', ['-Q', '-S', 'session.ctx', '-l', formatPcrSelection(pcrs)], {
      action: 'apply the PCR policy',
    });
    return 'session:session.ctx';
  }

  /** The EK (recreated from the TCG template) and the AK loaded under it with a PolicySecret(endorsement) session. */
  private static async loadAk(s: Step, ak: TpmKeyBlobs): Promise<void> {
    await writeFile(s.file('ak.pub'), ak.public);
    await writeFile(s.file('ak.priv'), ak.private);
    await s.tool('tpm2_createek', ['-Q', '-c', 'ek.ctx', '-G', 'rsa', '-u', 'ek.pub'], {
      action: 'recreate the endorsement key',
    });
    await s.flush();
    await TpmClient.endorsementSession(s, 'ek-session.ctx');
    await s.tool(
      'tpm2_load',
      ['-Q', '-C', 'ek.ctx', '-u', 'ak.pub', '-r', 'ak.priv', '-c', 'ak.ctx', '-P', 'session:ek-session.ctx'],
      { action: 'load the attestation key' },
    );
    await s.flush(true);
  }

  private static async endorsementSession(s: Step, file: string): Promise<void> {
    await s.tool('tpm2_startauthsession', ['-Q', '--policy-session', '-S', file], {
      action: 'start an endorsement policy session',
    });
    await s.tool('tpm2_policysecret', ['-Q', '-S', file, '-c', 'e'], { action: 'authorize the endorsement hierarchy' });
  }

  // ---- operations ----------------------------------------------------------------------------

  /** A cheap round trip (TPM2_GetRandom) that proves the TCTI reaches a working TPM. */
  async ping(): Promise<void> {
    await this.op('reach the TPM', (s) => s.tool('tpm2_getrandom', ['--hex', '8']));
  }

  async getRandom(n: number): Promise<Buffer> {
    return this.op('get random bytes from the TPM', async (s) => {
      const out = await s.tool('tpm2_getrandom', [String(n)]);
      return out;
    });
  }

  /** TPM2_PCR_Read of a selection (parsed from tpm2_pcrread's YAML, bank and index explicit). */
  async readPcrs(selection: PcrSelection | string = DEFAULT_BINDING_PCRS): Promise<PcrValues> {
    const sel = typeof selection === 'string' ? parsePcrSelection(selection) : selection;
    return this.op('read PCRs', async (s) => {
      const yaml = (await s.tool('tpm2_pcrread', [formatPcrSelection(sel)])).toString('utf8');
      const values: PcrValues = {};
      let bank: string | undefined;
      for (const line of yaml.split('\n')) {
        const b = /^\s{2}([a-z0-9]+):\s*$/.exec(line);
        if (b) {
          bank = b[1]!;
          values[bank] = {};
          continue;
        }
        const v = /^\s+(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$/.exec(line);
        if (v && bank) values[bank]![Number(v[1])] = Buffer.from(v[2]!, 'hex');
      }
      for (const b of sel) {
        const name = HASH_ALGS[b.hashAlg]!.name;
        for (const p of b.pcrs) {
          if (!values[name]?.[p])
            throw new EdgeguardError('EG_TPM', `the TPM did not return PCR ${name}:${p}; is the ${name} bank active?`);
        }
      }
      return values;
    });
  }

  /** TPM2_PCR_Extend of one bank of one PCR with a digest. */
  async extendPcr(index: number, bank: string, digest: Uint8Array): Promise<void> {
    const size = Object.values(HASH_ALGS).find((h) => h.name === bank)?.size;
    if (size === undefined || digest.length !== size)
      throw new EdgeguardError('EG_USAGE', `an extend of the ${bank} bank needs a ${size ?? '?'}-byte digest.`);
    await this.op(`extend PCR ${index}`, (s) => s.tool('tpm2_pcrextend', [`${index}:${bank}=${hex(digest)}`]));
  }

  /**
   * TPM2_Create under the SRK of a general key (tpm2-tools algorithm syntax, e.g. `ecc256:ecdsa-sha256`),
   * returning its blobs; the key is not left loaded.
   */
  async createKey(
    alg: string,
    attributes: string,
    policyDigest?: Uint8Array,
  ): Promise<TpmKeyBlobs & { publicArea: TpmPublic; name: Buffer }> {
    return this.op('create a key under the storage root key', async (s) => {
      await this.createSrk(s);
      const args = ['-Q', '-C', 'srk.ctx', '-G', alg, '-a', attributes, '-u', 'key.pub', '-r', 'key.priv'];
      if (policyDigest) {
        await writeFile(s.file('policy.bin'), policyDigest);
        args.push('-L', 'policy.bin');
      }
      await s.tool('tpm2_create', args);
      await s.flush();
      const blobs = { public: await readFile(s.file('key.pub')), private: await readFile(s.file('key.priv')) };
      const publicArea = parseTpm2bPublic(blobs.public);
      return { ...blobs, publicArea, name: objectName(publicArea) };
    });
  }

  /** TPM2_Load under the SRK; returns the name the TPM computed (so the blobs belong to this TPM). */
  async loadKey(key: TpmKeyBlobs): Promise<Buffer> {
    return this.op('load a key', async (s) => {
      await writeFile(s.file('key.pub'), key.public);
      await writeFile(s.file('key.priv'), key.private);
      await this.createSrk(s);
      await s.tool('tpm2_load', [
        '-Q',
        '-C',
        'srk.ctx',
        '-u',
        'key.pub',
        '-r',
        'key.priv',
        '-c',
        'key.ctx',
        '-n',
        'key.name',
      ]);
      await s.flush();
      return readFile(s.file('key.name'));
    });
  }

  /** The name of this TPM's SRK (to pin in the device file at provisioning). */
  async storageRootKeyName(): Promise<Buffer> {
    return this.op('create the storage root key', (s) => this.createSrk(s));
  }

  /** The PolicyPCR digest for the current PCR values (a trial session in the TPM). */
  async pcrPolicyDigest(pcrs: PcrSelection): Promise<Buffer> {
    return this.op('compute the PCR policy', async (s) => {
      await s.tool('tpm2_createpolicy', ['-Q', '--policy-pcr', '-l', formatPcrSelection(pcrs), '-L', 'policy.bin']);
      await s.flush(true);
      return readFile(s.file('policy.bin'));
    });
  }

  /**
   * The device binding key: RSA-2048 OAEP-SHA256 decrypt key under the SRK whose authPolicy is
   * PolicyPCR over `pcrs` at their current values.
   */
  async createBindingKey(pcrs: PcrSelection | string = DEFAULT_BINDING_PCRS): Promise<BindingKey> {
    const sel = typeof pcrs === 'string' ? parsePcrSelection(pcrs) : pcrs;
    for (let attempt = 1; ; attempt++) {
      const before = await this.readPcrs(sel);
      const policyDigest = await this.pcrPolicyDigest(sel);
      const key = await this.createKey(BINDING_KEY_ALG, BINDING_KEY_ATTRIBUTES, policyDigest);
      const after = await this.readPcrs(sel);
      // The policy must describe the values we record; if a PCR moved meanwhile, do it again.
      if (JSON.stringify(before, bufJson) === JSON.stringify(after, bufJson)) {
        return { ...key, pcrs: sel, policyDigest, pcrValues: after };
      }
      if (attempt >= 5) {
        throw new EdgeguardError(
          'EG_TPM_POLICY',
          `the PCRs ${formatPcrSelection(sel)} kept changing while the binding key was created; bind to PCRs that are stable after boot.`,
        );
      }
    }
  }

  /**
   * TPM2_RSA_Decrypt (RSAES-OAEP, the key's SHA-256 scheme, empty label) with a key whose policy is
   * PolicyPCR over `pcrs`. The plaintext comes back on the tool's stdout only.
   */
  async rsaDecrypt(key: TpmKeyBlobs, pcrs: PcrSelection, ciphertext: Uint8Array): Promise<Buffer> {
    return this.op('unwrap the content key with the binding key', async (s) => {
      await this.loadUnderSrk(s, key, 'bind.ctx', 'binding key');
      const auth = await TpmClient.pcrPolicySession(s, pcrs);
      // No input file argument: tpm2_rsadecrypt reads the ciphertext from stdin.
      return s.tool('tpm2_rsadecrypt', ['-Q', '-c', 'bind.ctx', '-p', auth, '-s', 'oaep'], { stdin: ciphertext });
    });
  }

  /** Seal up to 128 bytes to the PCR policy: a keyed-hash object under the SRK. */
  async seal(
    secret: Uint8Array,
    pcrs: PcrSelection | string = DEFAULT_BINDING_PCRS,
  ): Promise<TpmKeyBlobs & { pcrs: PcrSelection }> {
    if (secret.length === 0 || secret.length > 128)
      throw new EdgeguardError('EG_USAGE', 'a sealed secret must be 1 to 128 bytes.');
    const sel = typeof pcrs === 'string' ? parsePcrSelection(pcrs) : pcrs;
    const policyDigest = await this.pcrPolicyDigest(sel);
    return this.op('seal a secret to the PCR policy', async (s) => {
      await writeFile(s.file('policy.bin'), policyDigest);
      await this.createSrk(s);
      // The secret goes in on stdin ("-i -"), never into a file.
      await s.tool(
        'tpm2_create',
        [
          '-Q',
          '-C',
          'srk.ctx',
          '-a',
          SEAL_ATTRIBUTES,
          '-L',
          'policy.bin',
          '-i',
          '-',
          '-u',
          'seal.pub',
          '-r',
          'seal.priv',
        ],
        { stdin: secret },
      );
      await s.flush();
      return { public: await readFile(s.file('seal.pub')), private: await readFile(s.file('seal.priv')), pcrs: sel };
    });
  }

  async unseal(sealed: TpmKeyBlobs, pcrs: PcrSelection): Promise<Buffer> {
    return this.op('unseal the secret', async (s) => {
      await this.loadUnderSrk(s, sealed, 'seal.ctx', 'sealed object');
      const auth = await TpmClient.pcrPolicySession(s, pcrs);
      return s.tool('tpm2_unseal', ['-Q', '-c', 'seal.ctx', '-p', auth]);
    });
  }

  /** The EK (TCG default RSA template) and a new AK under it (restricted RSASSA-SHA256 signing key). */
  async createEndorsementKeys(): Promise<EndorsementKeys> {
    return this.op('create the endorsement and attestation keys', async (s) => {
      await s.tool('tpm2_createek', ['-Q', '-c', 'ek.ctx', '-G', 'rsa', '-u', 'ek.pub']);
      await s.flush();
      await s.tool('tpm2_createak', [
        '-Q',
        '-C',
        'ek.ctx',
        '-c',
        'ak.ctx',
        '-G',
        'rsa',
        '-g',
        'sha256',
        '-s',
        'rsassa',
        '-u',
        'ak.pub',
        '-r',
        'ak.priv',
        '-n',
        'ak.name',
      ]);
      await s.flush(true);
      return {
        ekPublic: await readFile(s.file('ek.pub')),
        ak: { public: await readFile(s.file('ak.pub')), private: await readFile(s.file('ak.priv')) },
        akName: await readFile(s.file('ak.name')),
      };
    });
  }

  /** The EK certificate (DER) from its TCG NV index, or undefined when the TPM has none. */
  async readEkCertificate(index = EK_CERT_NV_INDEX_RSA): Promise<Buffer | undefined> {
    try {
      return await this.op('read the EK certificate', async (s) => {
        await s.tool('tpm2_nvread', ['-Q', `0x${index.toString(16)}`, '-o', 'ek.crt']);
        return readFile(s.file('ek.crt'));
      });
    } catch (e) {
      if (e instanceof EdgeguardError && e.code === 'EG_TPM') return undefined;
      throw e;
    }
  }

  /** TPM2_Certify: the AK signs the name of `key` (proof that `key` is resident in this TPM). */
  async certify(ak: TpmKeyBlobs, key: TpmKeyBlobs): Promise<Attestation> {
    return this.op('certify the key with the attestation key', async (s) => {
      await TpmClient.loadAk(s, ak);
      await this.loadUnderSrk(s, key, 'key.ctx', 'key to certify');
      await s.tool('tpm2_certify', [
        '-Q',
        '-c',
        'key.ctx',
        '-C',
        'ak.ctx',
        '-g',
        'sha256',
        '-o',
        'attest.bin',
        '-s',
        'sig.bin',
        '-f',
        'tss',
      ]);
      await s.flush();
      return { attest: await readFile(s.file('attest.bin')), signature: await readFile(s.file('sig.bin')) };
    });
  }

  /** TPM2_Quote of `pcrs` with `nonce` as qualifying data, and the PCR values it covers. */
  async quote(
    ak: TpmKeyBlobs,
    pcrs: PcrSelection | string,
    nonce: Uint8Array,
  ): Promise<Attestation & { pcrValues: PcrValues }> {
    const sel = typeof pcrs === 'string' ? parsePcrSelection(pcrs) : pcrs;
    const q = await this.op('quote PCRs', async (s) => {
      await TpmClient.loadAk(s, ak);
      await s.tool('tpm2_quote', [
        '-Q',
        '-c',
        'ak.ctx',
        '-l',
        formatPcrSelection(sel),
        '-q',
        hex(nonce),
        '-g',
        'sha256',
        '-m',
        'attest.bin',
        '-s',
        'sig.bin',
      ]);
      await s.flush();
      return { attest: await readFile(s.file('attest.bin')), signature: await readFile(s.file('sig.bin')) };
    });
    // The values are read after the quote; a verifier recomputes the digest and asks again on a mismatch.
    return { ...q, pcrValues: await this.readPcrs(sel) };
  }

  /**
   * TPM2_ActivateCredential (Part 3, 12.5): recover the credential a verifier made with
   * MakeCredential for (EK, AK name). `credentialBlob` is the tpm2-tools file form
   * (u32 0xBADCC0DE, u32 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET). The credential comes back in memory.
   */
  async activateCredential(ak: TpmKeyBlobs, credentialBlob: Uint8Array): Promise<Buffer> {
    return this.op('activate the credential', async (s) => {
      await writeFile(s.file('cred.in'), credentialBlob);
      await TpmClient.loadAk(s, ak);
      await TpmClient.endorsementSession(s, 'ek-session.ctx');
      // tpm2_activatecredential prints `certinfodata:<hex>` on stdout (followed by the raw bytes
      // when no -o is given); we parse the hex line and never name an output file.
      const out = await s.tool('tpm2_activatecredential', [
        '-c',
        'ak.ctx',
        '-C',
        'ek.ctx',
        '-i',
        'cred.in',
        '-P',
        'session:ek-session.ctx',
      ]);
      const m = /^certinfodata:([0-9a-fA-F]*)\r?\n/.exec(out.subarray(0, 300).toString('latin1'));
      if (!m) {
        out.fill(0);
        throw new EdgeguardError(
          'EG_TPM',
          'tpm2_activatecredential printed no certinfodata line; is this tpm2-tools 5.x?',
        );
      }
      const cred = Buffer.from(m[1]!, 'hex');
      out.fill(0);
      return cred;
    });
  }

  // ---- NV counters (TCG TPM 2.0 Library Part 1, "NV Indices": TPM_NT_COUNTER) -----------------
  // A counter index only grows: TPM2_NV_Increment adds one, and a counter defined again after it
  // was undefined starts at the largest value any counter of this TPM ever held.

  /** The counter's value; undefined when the index is not defined, 0 before its first increment. */
  async nvCounterRead(index: number): Promise<bigint | undefined> {
    try {
      return await this.op('read the NV counter', async (s) => {
        const out = await s.tool('tpm2_nvread', [nvHandle(index), '-C', 'o', '-s', '8']);
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

  /** Define an owner-authorized counter index (TPMA_NV_COUNTER | OWNERREAD | OWNERWRITE | NO_DA). */
  async nvCounterDefine(index: number): Promise<void> {
    await this.op('define the NV counter', (s) =>
      s.tool('tpm2_nvdefine', [nvHandle(index), '-C', 'o', '-s', '8', '-a', 'nt=counter|ownerread|ownerwrite|no_da']),
    );
  }

  /** TPM2_NV_Increment; returns the new value. */
  async nvCounterIncrement(index: number): Promise<bigint> {
    await this.op('increment the NV counter', (s) => s.tool('tpm2_nvincrement', [nvHandle(index), '-C', 'o']));
    return (await this.nvCounterRead(index)) ?? 0n;
  }
}

function nvHandle(index: number): string {
  return `0x${index.toString(16)}`;
}

interface Step {
  dir: string;
  file(name: string): string;
  tool(tool: string, args: string[], opts?: { stdin?: Uint8Array; action?: string }): Promise<Buffer>;
  flush(sessions?: boolean): Promise<void>;
}

function bufJson(_k: string, v: unknown): unknown {
  if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer')
    return Buffer.from((v as { data: number[] }).data).toString('hex');
  return v;
}

/** Convenience for callers holding a TCTI string (e.g. the control plane's enrollment tests). */
export function activateCredential(tcti: string, ak: TpmKeyBlobs, credentialBlob: Uint8Array): Promise<Buffer> {
  return new TpmClient({ tcti }).activateCredential(ak, credentialBlob);
}
