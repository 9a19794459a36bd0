/** The fleet PKI: root and issuing CA, certificate profiles, CSRs, CRLs and key files. */
export { FleetCa, crlPem, FLEET_CA_FILE, PKI_SUBDIR, type IssuedCertificate, type ValidityOptions } from './ca.ts';
export {
  identityOf,
  normalizeSerial,
  FLEET_ORG,
  DEVICE_ID_RE,
  DEFAULT_DEVICE_DAYS,
  DEFAULT_ADMIN_DAYS,
  DEFAULT_SERVER_DAYS,
  type Role,
  type CertificateIdentity,
} from './profiles.ts';
export { verifyCsr, createCsr } from './csr.ts';
export {
  encryptPrivateKey,
  decryptPrivateKey,
  resolveCaPassphrase,
  PASSPHRASE_ENV,
  PBKDF2_ITERATIONS,
} from './keyfile.ts';
export { generateP256, privateKeyToPkcs8Pem, spkiOf, isP256Spki, x509 } from './crypto.ts';
export { renewalDue } from './renewal.ts';
