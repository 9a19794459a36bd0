/**
 * Endorsement-key certificates (TCG EK Credential Profile 2.0): the manufacturer's statement that
 * an EK lives in a genuine TPM. We accept an EK certificate when a chain of valid signatures leads
 * from it to a certificate in the operator's trust store (DIR/ek-roots/: the TPM vendors' root and
 * intermediate CAs, PEM or DER, several per PEM file), every issuer is a CA and inside its
 * validity, and the certified key is the EK public area the device presented.
 *
 * The chain is walked here with @peculiar/x509 rather than OpenSSL: EK certificates carry critical
 * TCG extensions (SAN directoryName with TPM manufacturer attributes) that generic TLS verifiers
 * refuse, and the EKU is the TCG one (2.23.133.8.1), not a TLS purpose.
 */
import { createHash, createPublicKey } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { EdgeguardError, FILE_CAPS, isEdgeguardError, readBoundedSync } from '../errors/index.ts';
import { x509 } from '../pki/index.ts';
import { tpmPublicKey, type TpmPublic } from '../tpm/index.ts';

export const EK_ROOTS_SUBDIR = 'ek-roots';
const MAX_CHAIN = 6;

export interface EkTrustStore {
  anchors: x509.X509Certificate[];
  /** Where they came from, for error sentences. */
  source: string;
}

function certsFromFile(path: string): x509.X509Certificate[] {
  const bytes = readBoundedSync(path, FILE_CAPS.certificate, 'read the EK trust anchor');
  const text = bytes.toString('latin1');
  if (text.includes('-----BEGIN CERTIFICATE-----')) {
    const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
    return blocks.map((b) => new x509.X509Certificate(b));
  }
  return [new x509.X509Certificate(bytes)];
}

/** Load every certificate in DIR/ek-roots (missing or empty directory: an empty store, which trusts nothing). */
export function loadEkTrustStore(dir: string): EkTrustStore {
  const anchors: x509.X509Certificate[] = [];
  if (existsSync(dir)) {
    for (const name of readdirSync(dir).sort()) {
      if (!/\.(pem|crt|cer|der)$/i.test(name)) continue;
      try {
        anchors.push(...certsFromFile(join(dir, name)));
      } catch (e) {
        if (isEdgeguardError(e, 'EG_FILE_TOO_LARGE')) throw e;
        throw new EdgeguardError(
          'EG_CONFIG',
          `${join(dir, name)} is not a PEM or DER certificate; remove it from the EK trust store.`,
          { cause: e },
        );
      }
    }
  }
  return { anchors, source: dir };
}

/** SHA-256 of the EK's SubjectPublicKeyInfo (DER), lowercase hex: the device identity and the auto-approve key. */
export function ekPublicKeyHash(ek: TpmPublic): string {
  const spki = tpmPublicKey(ek).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('hex');
}

function isCa(cert: x509.X509Certificate): boolean {
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  // Some old vendor roots (v1 certificates) have no basicConstraints; only an explicit CA:FALSE disqualifies.
  return bc === null || bc.ca;
}

function within(cert: x509.X509Certificate, now: Date): boolean {
  return cert.notBefore.getTime() <= now.getTime() && now.getTime() <= cert.notAfter.getTime();
}

async function signedBy(cert: x509.X509Certificate, issuer: x509.X509Certificate): Promise<boolean> {
  try {
    return await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true });
  } catch {
    return false;
  }
}

export interface VerifiedEkCertificate {
  certificate: x509.X509Certificate;
  /** EK certificate first, trust anchor last. */
  chain: x509.X509Certificate[];
}

/**
 * Check an EK certificate (DER) against the trust store, and that it certifies `ek`.
 * `intermediates` (sent by the device) may help build the chain but are never trusted themselves.
 */
export async function verifyEkCertificate(
  certDer: Uint8Array,
  ek: TpmPublic,
  trust: EkTrustStore,
  opts: { intermediates?: Uint8Array[]; now?: Date } = {},
): Promise<VerifiedEkCertificate> {
  const now = opts.now ?? new Date();
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certDer);
  } catch (e) {
    throw new EdgeguardError('EG_ENROLL', 'the EK certificate is not a DER X.509 certificate.', { cause: e });
  }
  // The certificate must be about this EK, or a genuine certificate could vouch for a software key.
  const certSpki = Buffer.from(cert.publicKey.rawData);
  const ekSpki = tpmPublicKey(ek).export({ type: 'spki', format: 'der' });
  if (
    !createPublicKey({ key: certSpki, format: 'der', type: 'spki' }).equals(
      createPublicKey({ key: ekSpki, format: 'der', type: 'spki' }),
    )
  ) {
    throw new EdgeguardError(
      'EG_ENROLL',
      'the EK certificate is for another key than the EK public area presented; the evidence does not belong together.',
    );
  }
  if (!within(cert, now))
    throw new EdgeguardError(
      'EG_ENROLL',
      `the EK certificate is not valid now (valid ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}).`,
    );
  if (trust.anchors.length === 0) {
    throw new EdgeguardError(
      'EG_ENROLL',
      `the EK trust store ${trust.source} is empty; copy your TPM vendors' CA certificates there.`,
    );
  }
  const pool: x509.X509Certificate[] = [];
  for (const der of opts.intermediates ?? []) {
    try {
      pool.push(new x509.X509Certificate(der));
    } catch (e) {
      throw new EdgeguardError('EG_ENROLL', 'an EK intermediate certificate is not DER X.509.', { cause: e });
    }
  }
  const isAnchor = (c: x509.X509Certificate) =>
    trust.anchors.some((a) => Buffer.from(a.rawData).equals(Buffer.from(c.rawData)));
  const chain = [cert];
  let current = cert;
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    if (depth > 0 && isAnchor(current)) return { certificate: cert, chain };
    const candidates = [...trust.anchors, ...pool].filter(
      (c) => c.subject === current.issuer && isCa(c) && within(c, now),
    );
    let next: x509.X509Certificate | undefined;
    for (const c of candidates) {
      if (await signedBy(current, c)) {
        next = c;
        break;
      }
    }
    if (next === undefined) break;
    chain.push(next);
    if (isAnchor(next)) return { certificate: cert, chain };
    current = next;
  }
  throw new EdgeguardError(
    'EG_ENROLL',
    `the EK certificate (issuer "${cert.issuer}") does not chain to a CA in ${trust.source}; the TPM is not from a manufacturer this server trusts. Add the vendor's CA there if it should be (the running server re-reads the directory when it changes; a chain needs every CA up to the root: for swtpm, its local CA's intermediate and root).`,
  );
}
