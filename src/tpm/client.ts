/**
 * The TPM 2.0 client: each operation is a short sequence of tpm2-tools commands (run, serialized,
 * retried and flushed by runner.ts) in a private temporary directory that never holds a secret in
 * the clear: unwrapped keys and unsealed data come back on the tool's stdout, into memory:
 * tpm2_rsadecrypt, tpm2_unseal and tpm2_getrandom write raw bytes to stdout when given no -o.
 * (`-o /dev/stdout` does NOT work here: Node's stdio pipes are socketpairs, which cannot be
 * reopened through /proc/self/fd.) Sessions that authorize a key's use: policy-session.ts; NV index
 * operations (`tpm.nv`): nv-client.ts; the EK, the AK, certify, quote and credential activation
 * (`tpm.attestation`): attest-client.ts.
 *
 * Key hierarchy (TCG TPM 2.0 Library Part 1, 23 "Protected storage hierarchy"):
 *   owner hierarchy -> SRK (primary, recreated from its template each time: same seed, same key)
 *                      -> binding key (RSA-2048 decrypt, fixedTPM|fixedParent, PolicyPCR, or
 *                         PolicyOR(PolicyPCR, PolicyAuthorize(operator key)))
 *                      -> identity key (RSA-2048 decrypt, fixedTPM|fixedParent, no policy)
 *                      -> sealed objects
 *   endorsement hierarchy -> EK (TCG EK template, tpm2_createek) -> AK (restricted ECDSA P-256 signing key)
 *                            (attest-client.ts)
 */
import { readFile, writeFile } from 'node:fs/promises';
import { EdgeguardError } from '../errors/index.ts';
import {
  DEFAULT_BINDING_PCRS,
  formatPcrSelection,
  parsePcrSelection,
  type PcrSelection,
  type PcrValues,
} from './pcr.ts';
import { objectName, parseTpm2bPublic, type TpmPublic } from './public.ts';
import { TpmNv } from './nv-client.ts';
import { TpmAttestation } from './attest-client.ts';
import { HASH_ALGS } from './constants.ts';
import { keyPolicySession, prepareKeyPolicy, type KeyPolicy } from './policy-session.ts';
import { TpmRunner, type TpmKeyBlobs } from './runner.ts';
import { policyAuthorizeDigest, policyOrDigest, type PolicySigner } from './policy.ts';

/** The binding key: RSA-2048 decrypt-only, OAEP-SHA256 fixed in the key's scheme. */
export const BINDING_KEY_ALG = 'rsa2048:oaep-sha256:null';
/**
 * fixedTPM|fixedParent: never leaves this TPM; sensitiveDataOrigin: the TPM generated it; decrypt.
 * userWithAuth is CLEAR so every use of the key (RSA_Decrypt is a USER-role command) needs the
 * PCR policy session; adminWithPolicy is CLEAR so TPM2_Certify (ADMIN role) works with the empty
 * authValue, which only lets the key be certified, never used.
 */
export const BINDING_KEY_ATTRIBUTES = 'fixedtpm|fixedparent|sensitivedataorigin|decrypt';
/** The identity key: like the binding key but usable with the empty authValue, under no PCR policy. */
export const IDENTITY_KEY_ATTRIBUTES = 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|decrypt';
/** Sealed data objects: cannot be duplicated; unsealing needs the policy session. */
const SEAL_ATTRIBUTES = 'fixedtpm|fixedparent';
export { SRK_TEMPLATE, type TpmClientOptions, type TpmKeyBlobs } from './runner.ts';

export interface BindingKey extends TpmKeyBlobs {
  publicArea: TpmPublic;
  name: Buffer;
  pcrs: PcrSelection;
  /** The key's authPolicy: the PolicyPCR digest, or PolicyOR(it, PolicyAuthorize(signer)). */
  policyDigest: Buffer;
  /** The PolicyPCR digest the TPM computed for the PCR values at creation. */
  pcrPolicyDigest: Buffer;
  /** The PCR values the policy was computed over. */
  pcrValues: PcrValues;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** Extensions per tpm2_pcrextend run: a command line of modest length. */
const EXTENDS_PER_RUN = 64;

export class TpmClient extends TpmRunner {
  /** NV index operations (nv-client.ts), on this client's step runner: `tpm.nv.counterRead(...)`. */
  readonly nv = new TpmNv({ op: (action, fn) => this.op(action, fn), createSrk: (s) => this.createSrk(s) });
  /** EK, AK, certify, quote, activateCredential (attest-client.ts): `tpm.attestation.quote(...)`. */
  readonly attestation = new TpmAttestation({
    op: (action, fn) => this.op(action, fn),
    loadUnderSrk: (s, key, ctx, what) => this.loadUnderSrk(s, key, ctx, what),
    readPcrs: (selection) => this.readPcrs(selection),
  });

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

  /** Several TPM2_PCR_Extend in one tool run, in order (a played boot: one process, not one per event). */
  async extendPcrs(extensions: Array<{ index: number; bank: string; digest: Uint8Array }>): Promise<void> {
    const specs = extensions.map(({ index, bank, digest }) => {
      const size = Object.values(HASH_ALGS).find((h) => h.name === bank)?.size;
      if (size === undefined || digest.length !== size)
        throw new EdgeguardError('EG_USAGE', `an extend of the ${bank} bank needs a ${size ?? '?'}-byte digest.`);
      return `${index}:${bank}=${hex(digest)}`;
    });
    for (let i = 0; i < specs.length; i += EXTENDS_PER_RUN)
      await this.op(`extend ${specs.length} PCRs`, (s) =>
        s.tool('tpm2_pcrextend', specs.slice(i, i + EXTENDS_PER_RUN)),
      );
  }

  /**
   * TPM2_Shutdown(CLEAR), what an OS sends before a reboot or power-off: the next TPM2_Startup(CLEAR)
   * is a TPM Reset (resetCount + 1, PCRs cleared). For tests and the demo, which power-cycle a swtpm.
   */
  async shutdown(): Promise<void> {
    await this.op('shut the TPM down', (s) => s.tool('tpm2_shutdown', ['-c']));
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
   * PolicyPCR over `pcrs` at their current values or, given the operator's PCR policy signing key,
   * PolicyOR(that PolicyPCR, PolicyAuthorize(signer)) (policy.ts): the key also answers under PCR
   * values the operator signed later, so an authorized boot change does not need a new key.
   */
  async createBindingKey(
    pcrs: PcrSelection | string = DEFAULT_BINDING_PCRS,
    signer?: PolicySigner,
  ): Promise<BindingKey> {
    const sel = typeof pcrs === 'string' ? parsePcrSelection(pcrs) : pcrs;
    for (let attempt = 1; ; attempt++) {
      const before = await this.readPcrs(sel);
      const pcrPolicyDigest = await this.pcrPolicyDigest(sel);
      const policyDigest = signer
        ? policyOrDigest([pcrPolicyDigest, policyAuthorizeDigest(signer.name)])
        : pcrPolicyDigest;
      const key = await this.createKey(BINDING_KEY_ALG, BINDING_KEY_ATTRIBUTES, policyDigest);
      const after = await this.readPcrs(sel);
      // The policy must describe the values we record; if a PCR moved meanwhile, do it again.
      if (JSON.stringify(before, bufJson) === JSON.stringify(after, bufJson)) {
        return { ...key, pcrs: sel, policyDigest, pcrPolicyDigest, pcrValues: after };
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
   * The device identity key: RSA-2048 OAEP-SHA256 decrypt key under the SRK with NO PCR policy
   * (userWithAuth, empty authValue). fixedTPM|fixedParent keep it in this TPM, so a copied device
   * directory still cannot use it; what it protects (the TLS client key) stays usable after a boot
   * change, so the device can still connect and report.
   */
  async createIdentityKey(): Promise<TpmKeyBlobs & { publicArea: TpmPublic; name: Buffer }> {
    return this.createKey(BINDING_KEY_ALG, IDENTITY_KEY_ATTRIBUTES);
  }

  /**
   * TPM2_RSA_Decrypt (RSAES-OAEP, the key's SHA-256 scheme, empty label) with a key used under
   * `policy` (a PCR selection: plain PolicyPCR). The plaintext comes back on the tool's stdout only.
   */
  async rsaDecrypt(key: TpmKeyBlobs, policy: PcrSelection | KeyPolicy, ciphertext: Uint8Array): Promise<Buffer> {
    const p: KeyPolicy = Array.isArray(policy) ? { kind: 'pcr', pcrs: policy } : policy;
    return this.op('unwrap the content key with the binding key', async (s) => {
      await prepareKeyPolicy(s, p);
      await this.loadUnderSrk(s, key, 'bind.ctx', 'binding key');
      const auth = await keyPolicySession(s, p);
      // No input file argument: tpm2_rsadecrypt reads the ciphertext from stdin.
      return s.tool('tpm2_rsadecrypt', ['-Q', '-c', 'bind.ctx', '-p', auth, '-s', 'oaep'], { stdin: ciphertext });
    });
  }

  /**
   * Seal up to 128 bytes to the PCR policy: a keyed-hash object under the SRK. With `signer`, the
   * policy is PolicyOR(PolicyPCR, PolicyAuthorize(signer)) as for the binding key, and
   * `pcrPolicyDigest` is the branch an `authorized` unseal names.
   */
  async seal(
    secret: Uint8Array,
    pcrs: PcrSelection | string = DEFAULT_BINDING_PCRS,
    signer?: PolicySigner,
  ): Promise<TpmKeyBlobs & { pcrs: PcrSelection; pcrPolicyDigest: Buffer }> {
    if (secret.length === 0 || secret.length > 128)
      throw new EdgeguardError('EG_USAGE', 'a sealed secret must be 1 to 128 bytes.');
    const sel = typeof pcrs === 'string' ? parsePcrSelection(pcrs) : pcrs;
    const pcrPolicyDigest = await this.pcrPolicyDigest(sel);
    const policyDigest = signer
      ? policyOrDigest([pcrPolicyDigest, policyAuthorizeDigest(signer.name)])
      : pcrPolicyDigest;
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
      const blobs = { public: await readFile(s.file('seal.pub')), private: await readFile(s.file('seal.priv')) };
      return { ...blobs, pcrs: sel, pcrPolicyDigest };
    });
  }

  /** Unseal under `policy` (a PCR selection: plain PolicyPCR); the data comes back on stdout only. */
  async unseal(sealed: TpmKeyBlobs, policy: PcrSelection | KeyPolicy): Promise<Buffer> {
    const p: KeyPolicy = Array.isArray(policy) ? { kind: 'pcr', pcrs: policy } : policy;
    return this.op('unseal the secret', async (s) => {
      await prepareKeyPolicy(s, p);
      await this.loadUnderSrk(s, sealed, 'seal.ctx', 'sealed object');
      const auth = await keyPolicySession(s, p);
      return s.tool('tpm2_unseal', ['-Q', '-c', 'seal.ctx', '-p', auth]);
    });
  }
}

function bufJson(_k: string, v: unknown): unknown {
  if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer')
    return Buffer.from((v as { data: number[] }).data).toString('hex');
  return v;
}

/** Convenience for callers holding a TCTI string (e.g. the control plane's enrollment tests). */
export function activateCredential(tcti: string, ak: TpmKeyBlobs, credentialBlob: Uint8Array): Promise<Buffer> {
  return new TpmClient({ tcti }).attestation.activateCredential(ak, credentialBlob);
}
