/**
 * Certificate signing requests from devices (PKCS#10, RFC 2986): we take only the public key,
 * after checking the request's self-signature (proof that the sender holds the private key). The
 * subject is ignored; the CA sets it from the device record.
 */
import { EdgeguardError } from '../errors/index.ts';
import { isP256Spki, x509, type CryptoKeyPair } from './crypto.ts';

export const MAX_CSR_PEM = 8192;

export async function verifyCsr(pem: string): Promise<{ spki: Buffer; csr: x509.Pkcs10CertificateRequest }> {
  if (typeof pem !== 'string' || pem.length > MAX_CSR_PEM)
    throw new EdgeguardError('EG_ENROLL', 'the certificate request is missing or too large.');
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch (e) {
    throw new EdgeguardError('EG_ENROLL', 'the certificate request is not a PEM PKCS#10 request.', { cause: e });
  }
  const spki = Buffer.from(csr.publicKey.rawData);
  if (!isP256Spki(spki))
    throw new EdgeguardError('EG_ENROLL', 'the certificate request must be for an ECDSA P-256 key.');
  let ok = false;
  try {
    ok = await csr.verify();
  } catch (e) {
    throw new EdgeguardError('EG_ENROLL', 'the certificate request signature could not be checked.', { cause: e });
  }
  if (!ok) throw new EdgeguardError('EG_ENROLL', 'the certificate request is not signed by its own key.');
  return { spki, csr };
}

export async function createCsr(keys: CryptoKeyPair, commonName: string): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${commonName}`,
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  return csr.toString('pem') + '\n';
}
