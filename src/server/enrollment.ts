/**
 * The server side of enrollment (protocol in attest/protocol.ts, docs/formats.md):
 *
 *   nonce   -> a single-use value (stops a recorded start request from being replayed)
 *   start   -> TPM devices: evidence checked (EK chain, AK policy, binding key certified by the
 *              AK), then a MakeCredential challenge; software devices (if policy allows): a CSR
 *              that signs the nonce, and the device is recorded at once
 *   finish  -> the ActivateCredential answer, compared in constant time; single-use challenge id;
 *              the device is recorded pending (or approved when its EK hash is on the list)
 *   approve -> the device certificate is issued from the CSR kept with the device
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { EdgeguardError, FILE_CAPS, isEdgeguardError, readBoundedTextSync } from '../errors/index.ts';
import { makeCredential, verifyTpmEvidence, protocol } from '../attest/index.ts';
import { verifyCsr, x509, type IssuedCertificate } from '../pki/index.ts';
import type { DeviceRecord, KeyProvider } from '../store/index.ts';
import type { ControlPlaneContext } from './context.ts';

const sha256hex = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
const b64 = (s: string) => Buffer.from(s, 'base64');

/**
 * One lowercase SHA-256 hex per line; '#' starts a comment; anything else is ignored (fail closed).
 * A list that cannot be read approves nothing; one past the cap is EG_FILE_TOO_LARGE (the server
 * refuses to start with it; at an enrollment it approves nothing and the error is logged).
 */
export function readAutoApproveList(path: string | undefined): Set<string> {
  const out = new Set<string>();
  if (path === undefined) return out;
  let text: string;
  try {
    text = readBoundedTextSync(path, FILE_CAPS.config, 'read the auto-approve list');
  } catch (e) {
    if (isEdgeguardError(e, 'EG_FILE_TOO_LARGE')) throw e;
    return out;
  }
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/#.*/, '').trim().toLowerCase();
    if (/^[0-9a-f]{64}$/.test(line)) out.add(line);
  }
  return out;
}

interface PendingEnrollment {
  keyProvider: KeyProvider;
  ekHash: string;
  ekCertPem: string | null;
  akPublic: string;
  akName: string;
  bindingPublic: string;
  csr: string;
  label: string | null;
}

export class EnrollmentService {
  constructor(private readonly ctx: ControlPlaneContext) {}

  async issueNonce(): Promise<protocol.NonceResponse> {
    const nonce = randomBytes(protocol.NONCE_BYTES).toString('base64url');
    const c = await this.ctx.store.createChallenge({
      id: nonce,
      kind: 'nonce',
      value: '-',
      ttlSeconds: this.ctx.policy.challengeTtlSeconds,
    });
    return { nonce, expiresAt: c.expires_at };
  }

  private async consumeNonce(nonce: string): Promise<void> {
    if ((await this.ctx.store.consumeChallenge(nonce, 'nonce')) === undefined) {
      throw new EdgeguardError(
        'EG_ENROLL',
        'the enrollment nonce is unknown, expired or already used (a replay?); ask POST /v1/enroll/nonce for a new one.',
        { details: { reason: 'nonce' } },
      );
    }
  }

  private async refuseKnown(ekHash: string): Promise<void> {
    const existing = await this.ctx.store.getDeviceByEk(ekHash);
    if (existing) {
      throw new EdgeguardError(
        'EG_EXISTS',
        // Anonymous callers learn no device id or status; the operator finds the record by EK hash.
        `this TPM is already enrolled; an operator must revoke and remove its record (its EK hash is ${ekHash}; edgeguard device list, device revoke, then device remove) before it enrolls again.`,
        { details: { reason: 'already_enrolled', ekSha256: ekHash } },
      );
    }
  }

  async start(body: protocol.EnrollStart): Promise<protocol.ChallengeResponse | protocol.EnrollFinished> {
    const req = protocol.EnrollStart.parse(body);
    if (req.keyProvider === 'software') return this.startSoftware(req);
    await this.consumeNonce(req.nonce);
    await verifyCsr(req.csr);
    const autoApprove = this.autoApproveList();
    const v = await verifyTpmEvidence(
      {
        ekPublic: b64(req.ekPublic),
        ekCertificate: req.ekCertificate !== undefined ? b64(req.ekCertificate) : undefined,
        ekChain: req.ekChain?.map(b64),
        akPublic: b64(req.akPublic),
        bindingPublic: b64(req.bindingPublic),
        certifyInfo: b64(req.certifyInfo),
        certifySignature: b64(req.certifySignature),
      },
      { trust: this.ctx.ekTrust, acceptEkWithoutCertificate: (h) => autoApprove.has(h) },
    );
    await this.refuseKnown(v.ekHash);
    // Part 1, 24: only the TPM holding this EK can open the credential, and only for this AK name.
    const secret = randomBytes(protocol.CREDENTIAL_BYTES);
    const made = makeCredential(v.ek, v.akName, secret);
    const pending: PendingEnrollment = {
      keyProvider: 'tpm',
      ekHash: v.ekHash,
      ekCertPem: v.ekCertificate ? v.ekCertificate.toString('pem') : null,
      akPublic: req.akPublic,
      akName: v.akName.toString('hex'),
      bindingPublic: req.bindingPublic,
      csr: req.csr,
      label: req.label ?? null,
    };
    const challengeId = randomBytes(24).toString('base64url');
    const c = await this.ctx.store.createChallenge({
      id: challengeId,
      kind: 'credential',
      value: sha256hex(secret),
      payload: JSON.stringify(pending),
      ttlSeconds: this.ctx.policy.challengeTtlSeconds,
    });
    secret.fill(0);
    return { challengeId, credentialBlob: made.blob.toString('base64'), expiresAt: c.expires_at };
  }

  private async startSoftware(req: protocol.SoftwareEnrollStart): Promise<protocol.EnrollFinished> {
    if (!this.ctx.policy.allowSoftwareDevices) {
      throw new EdgeguardError(
        'EG_FORBIDDEN',
        'this server does not accept software-bound devices; enroll with a TPM, or start the server with --allow-software-devices.',
        { details: { reason: 'software_not_allowed' } },
      );
    }
    await this.consumeNonce(req.nonce);
    const { spki, csr } = await verifyCsr(req.csr);
    // The CSR's self-signature covers its challengePassword: proof of possession, fresh for this nonce.
    const cp = csr.getAttribute('1.2.840.113549.1.9.7');
    const password = cp ? new x509.ChallengePasswordAttribute(cp.rawData).password : undefined;
    if (password !== req.nonce) {
      throw new EdgeguardError(
        'EG_ENROLL',
        'the certificate request does not carry the enrollment nonce as its challengePassword; build it with the nonce from /v1/enroll/nonce.',
        { details: { reason: 'nonce_not_signed' } },
      );
    }
    const ekHash = sha256hex(spki);
    await this.refuseKnown(ekHash);
    return this.recordDevice({
      keyProvider: 'software',
      ekHash,
      ekCertPem: null,
      akPublic: '',
      akName: '',
      bindingPublic: '',
      csr: req.csr,
      label: req.label ?? null,
    });
  }

  async finish(body: protocol.EnrollFinish): Promise<protocol.EnrollFinished> {
    const req = protocol.EnrollFinish.parse(body);
    const challenge = await this.ctx.store.consumeChallenge(req.challengeId, 'credential');
    if (challenge === undefined || challenge.payload === null) {
      throw new EdgeguardError(
        'EG_ENROLL',
        'the enrollment challenge is unknown, expired or already answered (a replay?); start the enrollment again.',
        { details: { reason: 'challenge' } },
      );
    }
    const answer = Buffer.from(sha256hex(b64(req.credential)), 'hex');
    const expected = Buffer.from(challenge.value, 'hex');
    if (answer.length !== expected.length || !timingSafeEqual(answer, expected)) {
      throw new EdgeguardError(
        'EG_ENROLL',
        'the ActivateCredential answer is wrong: the attestation key is not in the TPM that owns this EK. Enrollment refused.',
        { details: { reason: 'activation', ekSha256: (JSON.parse(challenge.payload) as PendingEnrollment).ekHash } },
      );
    }
    const pending = JSON.parse(challenge.payload) as PendingEnrollment;
    await this.refuseKnown(pending.ekHash);
    return this.recordDevice(pending);
  }

  /**
   * The list, re-read at each enrollment. One that grew past its cap since start approves nothing
   * (the device waits for an operator) and is logged: the anonymous caller is not told the path.
   */
  private autoApproveList(): Set<string> {
    try {
      return readAutoApproveList(this.ctx.policy.autoApproveFile);
    } catch (e) {
      this.ctx.log.error({ err: e }, 'the auto-approve list is not used');
      return new Set();
    }
  }

  private async recordDevice(p: PendingEnrollment): Promise<protocol.EnrollFinished> {
    const autoApprove = this.autoApproveList();
    const approved = p.keyProvider === 'tpm' && autoApprove.has(p.ekHash);
    const id = `dev-${randomBytes(8).toString('hex')}`;
    const pollToken = randomBytes(32).toString('base64url');
    await this.ctx.store.insertDevice({
      id,
      ek_pub_sha256: p.ekHash,
      ek_cert_pem: p.ekCertPem,
      ak_public: p.akPublic,
      ak_name: p.akName,
      binding_public: p.bindingPublic,
      key_provider: p.keyProvider,
      status: 'pending',
      label: p.label,
      csr_pem: p.csr,
      poll_token_sha256: sha256hex(pollToken),
      created_at: new Date().toISOString(),
    });
    let status: 'pending' | 'approved' = 'pending';
    if (approved) {
      await this.approve(id, 'auto-approve list');
      status = 'approved';
    }
    this.ctx.log.info({ deviceId: id, keyProvider: p.keyProvider, status }, 'device enrolled');
    return { deviceId: id, status, keyProvider: p.keyProvider, pollToken };
  }

  /** pending -> approved, then the certificate is issued from the CSR kept with the device. */
  async approve(id: string, by: string): Promise<DeviceRecord> {
    const device = await this.ctx.store.approveDevice(id, by);
    if (!device) {
      const existing = await this.ctx.store.getDevice(id);
      if (!existing) throw new EdgeguardError('EG_NOT_FOUND', `no device ${id}; see \`edgeguard device list\`.`);
      throw new EdgeguardError('EG_EXISTS', `device ${id} is ${existing.status}, not pending; nothing to approve.`);
    }
    await this.ensureCertificate(device);
    return device;
  }

  async issueFor(device: DeviceRecord, csrPem: string): Promise<IssuedCertificate> {
    const { spki } = await verifyCsr(csrPem);
    const issued = await this.ctx.ca.issueDeviceCertificate({
      deviceId: device.id,
      keyProvider: device.key_provider,
      publicKey: spki,
      days: this.ctx.policy.deviceCertDays,
    });
    await this.ctx.store.recordCertificate({
      serial: issued.serial,
      device_id: device.id,
      role: 'device',
      subject: issued.subject,
      not_before: issued.notBefore.toISOString(),
      not_after: issued.notAfter.toISOString(),
      pem: issued.chainPem,
    });
    // Every device certificate, first or renewed, is on record (fail-request: no unlogged certificate).
    await this.ctx.events.emit('cert.issued', {
      actor: { kind: 'device', id: device.id },
      subject: device.id,
      outcome: 'success',
      details: {
        serial: issued.serial,
        role: 'device',
        subjectDn: issued.subject,
        notAfter: issued.notAfter.toISOString(),
      },
    });
    return issued;
  }

  /** The device's current certificate (chain PEM), issuing one if an approved device has none. */
  async ensureCertificate(device: DeviceRecord): Promise<{ chainPem: string; notAfter: string }> {
    const current = await this.ctx.store.latestCertificateFor(device.id);
    if (current && current.not_after > new Date().toISOString())
      return { chainPem: current.pem, notAfter: current.not_after };
    const issued = await this.issueFor(device, device.csr_pem);
    return { chainPem: issued.chainPem, notAfter: issued.notAfter.toISOString() };
  }

  async pollCertificate(
    deviceId: string,
    token: string | undefined,
  ): Promise<protocol.CertificateResponse | { status: 'pending' }> {
    const device = await this.ctx.store.getDevice(deviceId);
    const presented = Buffer.from(sha256hex(token ?? ''), 'hex');
    const expected = device ? Buffer.from(device.poll_token_sha256, 'hex') : Buffer.alloc(32);
    // Same answer for an unknown device and a wrong token: ids cannot be probed.
    if (!device || token === undefined || !timingSafeEqual(presented, expected)) {
      throw new EdgeguardError(
        'EG_UNAUTHORIZED',
        'unknown device or wrong poll token; use the pollToken returned by /v1/enroll/finish.',
      );
    }
    if (device.status === 'revoked' || device.status === 'tampered')
      throw new EdgeguardError(
        'EG_FORBIDDEN',
        `device ${deviceId} has been ${device.status === 'revoked' ? 'revoked' : 'locked by a tamper report'}.`,
      );
    if (device.status === 'pending') return { status: 'pending' };
    const cert = await this.ensureCertificate(device);
    return { deviceId, certificateChain: cert.chainPem, fleetCa: this.ctx.ca.rootPem, notAfter: cert.notAfter };
  }
}
