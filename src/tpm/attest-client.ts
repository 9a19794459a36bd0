/**
 * Endorsement-hierarchy and attestation operations of the TPM client, as tpm2-tools steps run by the
 * client's step runner (runner.ts): TpmClient exposes them as `tpm.attestation`. The EK (TCG EK
 * template, recreated each time) and the AK under it (TCG TPM 2.0 Library Part 1, 23 "Protected
 * storage hierarchy"; 25 "Attestation"); TPM2_Certify and TPM2_Quote signed by the AK, whose
 * TPMS_ATTEST and TPMT_SIGNATURE are parsed and verified in attest.ts and signature.ts; and
 * TPM2_ActivateCredential, whose credential comes back on the tool's stdout, into memory.
 * Keys in the owner hierarchy (binding and identity keys, sealed objects): client.ts.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { EdgeguardError } from '../errors/index.ts';
import { formatPcrSelection, parsePcrSelection, type PcrSelection, type PcrValues } from './pcr.ts';
import type { Step } from './policy-session.ts';
import type { TpmKeyBlobs } from './runner.ts';

/** TCG EK Credential Profile 2.0, section 2.2.1.4: the RSA EK certificate's NV index. */
export const EK_CERT_NV_INDEX_RSA = 0x01c00002;

export interface EndorsementKeys {
  /** EK TPM2B_PUBLIC. */
  ekPublic: Buffer;
  /** The AK (restricted ECDSA P-256 / SHA-256 signing key under the EK; RSASSA ones enrolled earlier stay valid). */
  ak: TpmKeyBlobs;
  akName: Buffer;
}

export interface Attestation {
  /** TPMS_ATTEST bytes, exactly as signed. */
  attest: Buffer;
  /** TPMT_SIGNATURE. */
  signature: Buffer;
}

/** What the attestation operations need from the client: its step runner, SRK loads and PCR reads. */
export interface AttestationSteps {
  op<T>(action: string, fn: (step: Step) => Promise<T>): Promise<T>;
  loadUnderSrk(s: Step, key: TpmKeyBlobs, ctx: string, what: string): Promise<void>;
  readPcrs(selection: PcrSelection): Promise<PcrValues>;
}

export class TpmAttestation {
  private readonly steps: AttestationSteps;

  constructor(steps: AttestationSteps) {
    this.steps = steps;
  }

  /** The EK (recreated from the TCG template) and the AK loaded under it with a PolicySecret(endorsement) session. */
  private static async loadAk(s: Step, ak: TpmKeyBlobs): Promise<void> {
    await writeFile(s.file('ak.pub'), ak.public);
    await writeFile(s.file('ak.priv'), ak.private);
    await s.tool('tpm2_createek', ['-Q', '-c', 'ek.ctx', '-G', 'rsa', '-u', 'ek.pub'], {
      action: 'recreate the endorsement key',
    });
    await s.flush();
    await TpmAttestation.endorsementSession(s, 'ek-session.ctx');
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

  /**
   * The EK (TCG default RSA template) and a new AK under it: a restricted ECDSA P-256 / SHA-256
   * signing key (a quote signed in a fraction of an RSA-2048 signature's time, on the device's TPM
   * and in the verifier). AKs enrolled as RSASSA keys stay valid: the verifier checks both.
   */
  async createEndorsementKeys(): Promise<EndorsementKeys> {
    return this.steps.op('create the endorsement and attestation keys', async (s) => {
      await s.tool('tpm2_createek', ['-Q', '-c', 'ek.ctx', '-G', 'rsa', '-u', 'ek.pub']);
      await s.flush();
      await s.tool('tpm2_createak', [
        '-Q',
        '-C',
        'ek.ctx',
        '-c',
        'ak.ctx',
        '-G',
        'ecc',
        '-g',
        'sha256',
        '-s',
        'ecdsa',
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
      return await this.steps.op('read the EK certificate', async (s) => {
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
    return this.steps.op('certify the key with the attestation key', async (s) => {
      await TpmAttestation.loadAk(s, ak);
      await this.steps.loadUnderSrk(s, key, 'key.ctx', 'key to certify');
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
    const q = await this.steps.op('quote PCRs', async (s) => {
      await TpmAttestation.loadAk(s, ak);
      await s.tool('tpm2_quote', [
        '-Q',
        '-c',
        'ak.ctx',
        '-l',
        formatPcrSelection(sel),
        '-q',
        Buffer.from(nonce).toString('hex'),
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
    return { ...q, pcrValues: await this.steps.readPcrs(sel) };
  }

  /**
   * TPM2_ActivateCredential (Part 3, 12.5): recover the credential a verifier made with
   * MakeCredential for (EK, AK name). `credentialBlob` is the tpm2-tools file form
   * (u32 0xBADCC0DE, u32 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET). The credential comes back in memory.
   */
  async activateCredential(ak: TpmKeyBlobs, credentialBlob: Uint8Array): Promise<Buffer> {
    return this.steps.op('activate the credential', async (s) => {
      await writeFile(s.file('cred.in'), credentialBlob);
      await TpmAttestation.loadAk(s, ak);
      await TpmAttestation.endorsementSession(s, 'ek-session.ctx');
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
}
