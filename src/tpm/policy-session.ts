/**
 * The sessions that authorize a use of a device key, as tpm2-tools steps inside one TpmClient
 * operation (client.ts). Every session is salted with the SRK (`srk.ctx` must be in the step
 * directory) and has the decrypt and encrypt attributes, so the first command parameter (the
 * wrapped key) and the first response parameter (the unwrapped key, the unsealed data) cross the
 * TPM bus AES-CFB encrypted under a session key a passive bus sniffer cannot derive (Part 1, 21
 * "Session-based encryption").
 *
 *   pcr         PolicyPCR over the key's selection (Part 3, 23.7): keys made before authorized policies
 *   authorized  PolicyOR( PolicyPCR(provisioned) | PolicyAuthorize(signer) ) (policy.ts): either the
 *               PCRs still hold their provisioned values, or an operator-signed authorization for
 *               the current values is checked by the TPM (VerifySignature -> ticket -> PolicyAuthorize)
 *   none        an HMAC session with the empty authValue: the identity key (no PCR policy)
 */
import { writeFile } from 'node:fs/promises';
import { EdgeguardError } from '../errors/index.ts';
import { TpmToolError } from './tools.ts';
import { formatPcrSelection, type PcrSelection } from './pcr.ts';
import { PCR_POLICY_REF, authorizationMessage, policyAuthorizeDigest, type PolicySigner } from './policy.ts';

/** One TpmClient operation's private work directory and its tools. */
export interface Step {
  dir: string;
  file(name: string): string;
  tool(tool: string, args: string[], opts?: { stdin?: Uint8Array; action?: string }): Promise<Buffer>;
  flush(sessions?: boolean): Promise<void>;
}

/** An operator-signed approval of one PolicyPCR digest (pcr-authorization.ts, already checked in software). */
export interface SignedPcrPolicy {
  selection: PcrSelection;
  approvedPolicy: Buffer;
  /** RSASSA-PKCS1-v1_5 SHA-256 over approvedPolicy || PCR_POLICY_REF. */
  signature: Buffer;
}

/** How a use of a key is authorized. */
export type KeyPolicy =
  | { kind: 'pcr'; pcrs: PcrSelection }
  | {
      kind: 'authorized';
      /** The provisioned branch: PolicyPCR over these PCRs at their provisioning values. */
      pcrs: PcrSelection;
      /** That branch's digest (recorded at provisioning). */
      provisionedPolicy: Buffer;
      signer: PolicySigner;
      /** Use the signed branch with this authorization; absent: the provisioned branch. */
      authorization?: SignedPcrPolicy;
    }
  | { kind: 'none' };

async function startSession(s: Step, kind: 'policy' | 'hmac'): Promise<void> {
  await s.tool('tpm2_startauthsession', ['-Q', `--${kind}-session`, '-S', 'session.ctx', '-c', 'srk.ctx'], {
    action: `start a salted ${kind} session`,
  });
  await s.tool('tpm2_sessionconfig', ['session.ctx', '--enable-encrypt', '--enable-decrypt'], {
    action: 'enable parameter encryption',
  });
}

/**
 * TPM2_LoadExternal of the signer's public key (owner hierarchy: a ticket from a key in the NULL
 * hierarchy is a NULL ticket that PolicyAuthorize refuses), then TPM2_VerifySignature: the TPM's
 * own check of the operator's signature, as a TPMT_TK_VERIFIED ticket in `ticket.bin`.
 */
async function verifyAuthorization(s: Step, signer: PolicySigner, a: SignedPcrPolicy): Promise<void> {
  await writeFile(s.file('signer.pub'), signer.public);
  await writeFile(s.file('signer.name'), signer.name);
  await writeFile(s.file('approved.bin'), a.approvedPolicy);
  await writeFile(s.file('approved.msg'), authorizationMessage(a.approvedPolicy));
  await writeFile(s.file('approved.sig'), a.signature);
  await writeFile(s.file('policy-ref.bin'), PCR_POLICY_REF);
  await s.tool('tpm2_loadexternal', ['-Q', '-C', 'o', '-u', 'signer.pub', '-c', 'signer.ctx'], {
    action: 'load the PCR policy signing key',
  });
  await s.tool(
    'tpm2_verifysignature',
    [
      '-Q',
      '-c',
      'signer.ctx',
      '-g',
      'sha256',
      '-m',
      'approved.msg',
      '-s',
      'approved.sig',
      '-f',
      'rsassa',
      '-t',
      'ticket.bin',
    ],
    { action: 'verify the PCR authorization signature' },
  );
  await s.flush();
}

/**
 * Start the session `policy` needs and satisfy it; returns the `-p` argument for the key's use.
 * `srk.ctx` must exist (the session is salted with it), and for `authorized` with an
 * authorization, prepareKeyPolicy must have run earlier in the same step (it leaves the ticket).
 */
export async function keyPolicySession(s: Step, policy: KeyPolicy): Promise<string> {
  if (policy.kind === 'none') {
    await startSession(s, 'hmac');
    return 'session:session.ctx';
  }
  await startSession(s, 'policy');
  if (policy.kind === 'pcr') {
    await s.tool('tpm2_policypcr', ['-Q', '-S', 'session.ctx', '-l', formatPcrSelection(policy.pcrs)], {
      action: 'apply the PCR policy',
    });
    return 'session:session.ctx';
  }
  const a = policy.authorization;
  await s.tool('tpm2_policypcr', ['-Q', '-S', 'session.ctx', '-l', formatPcrSelection(a ? a.selection : policy.pcrs)], {
    action: 'apply the PCR policy',
  });
  // TPM_RC_VALUE from PolicyAuthorize (the session's PolicyPCR digest is not the approved one) or
  // PolicyOR (the digest is neither branch): the PCRs do not hold the values of the branch taken.
  const refused = (e: unknown): never => {
    if (e instanceof TpmToolError && e.decoded?.name === 'TPM_RC_VALUE')
      throw new EdgeguardError(
        'EG_TPM_POLICY',
        a
          ? 'the current PCRs are not the ones the PCR authorization approves; the key is refused.'
          : "the current PCRs are not the binding key's provisioned values and no PCR authorization matches them; the key is refused.",
        { cause: e.error },
      );
    throw e;
  };
  if (a) {
    await s
      .tool(
        'tpm2_policyauthorize',
        [
          '-Q',
          '-S',
          'session.ctx',
          '-i',
          'approved.bin',
          '-q',
          'policy-ref.bin',
          '-n',
          'signer.name',
          '-t',
          'ticket.bin',
        ],
        { action: 'apply the authorized PCR policy' },
      )
      .catch(refused);
  }
  await writeFile(s.file('branch-pcr.bin'), policy.provisionedPolicy);
  await writeFile(s.file('branch-authorized.bin'), policyAuthorizeDigest(policy.signer.name));
  await s
    .tool('tpm2_policyor', ['-Q', '-S', 'session.ctx', '-l', 'sha256:branch-pcr.bin,branch-authorized.bin'], {
      action: 'combine the policy branches',
    })
    .catch(refused);
  return 'session:session.ctx';
}

/** The TPM-side checks that must happen before any object is loaded in this step. */
export async function prepareKeyPolicy(s: Step, policy: KeyPolicy): Promise<void> {
  if (policy.kind === 'authorized' && policy.authorization) {
    if (policy.authorization.signature.length !== 256)
      throw new EdgeguardError('EG_FORMAT', 'a PCR authorization signature is 256 bytes (RSA-2048).');
    await verifyAuthorization(s, policy.signer, policy.authorization);
  }
}
