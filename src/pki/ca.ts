/**
 * The fleet certificate authority: an ECDSA P-256 root that signs one issuing CA, which signs
 * every device, admin and server certificate and the CRL. Both CA keys live in DIR/pki/ as
 * passphrase-encrypted PKCS#8 (keyfile.ts); the server only ever decrypts the issuing key, and
 * only into memory.
 *
 * Files (all PEM): DIR/pki/root-ca.crt, root-ca.key (encrypted), issuing-ca.crt,
 * issuing-ca.key (encrypted); DIR/fleet-ca.pem is the root certificate that devices and admin
 * tools pin.
 */
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EdgeguardError, FILE_CAPS, fsError, readBoundedTextSync } from '../errors/index.ts';
import { decryptPrivateKey, encryptPrivateKey } from './keyfile.ts';
import { integer } from './der.ts';
import { ECDSA_SHA256, signingKeyFromKeyObject, x509, isP256Spki, type CryptoKey } from './crypto.ts';
import {
  DEFAULT_ADMIN_DAYS,
  DEFAULT_DEVICE_DAYS,
  DEFAULT_SERVER_DAYS,
  DEVICE_ID_RE,
  DEVICE_URI_PREFIX,
  FLEET_ORG,
  KEY_PROVIDER_URI_PREFIX,
  normalizeSerial,
  type Role,
} from './profiles.ts';

export const PKI_SUBDIR = 'pki';
export const FLEET_CA_FILE = 'fleet-ca.pem';
const DAY_MS = 24 * 3600 * 1000;
/** Backdate notBefore a little so that devices with a slightly slow clock accept a fresh cert. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;

export interface IssuedCertificate {
  certificate: x509.X509Certificate;
  /** The leaf alone, PEM. */
  pem: string;
  /** Leaf followed by the issuing CA: what a TLS peer sends. */
  chainPem: string;
  serial: string;
  subject: string;
  role: Role;
  deviceId: string | null;
  notBefore: Date;
  notAfter: Date;
}

export interface ValidityOptions {
  days?: number | undefined;
  /** Explicit validity (tests issue expired certificates with these). */
  notBefore?: Date | undefined;
  notAfter?: Date | undefined;
}

/** 16 random bytes, first byte in 0x10..0x7f: positive, fixed length, no leading zero. */
function newSerial(): string {
  const b = randomBytes(16);
  b[0] = 0x10 + (b[0]! % 0x70);
  return b.toString('hex');
}

function pemOf(cert: x509.X509Certificate): string {
  return cert.toString('pem') + '\n';
}

function readText(path: string, maxBytes: number, what: string): string {
  return readBoundedTextSync(path, maxBytes, `read ${what}`);
}

export class FleetCa {
  private constructor(
    readonly root: x509.X509Certificate,
    readonly issuing: x509.X509Certificate,
    private readonly issuingKey: CryptoKey,
  ) {}

  static exists(dataDir: string): boolean {
    return existsSync(join(dataDir, PKI_SUBDIR, 'issuing-ca.crt'));
  }

  /** Create a new root and issuing CA in DIR/pki. Refuses to overwrite an existing CA. */
  static async create(dataDir: string, passphrase: string, opts: { name?: string } = {}): Promise<FleetCa> {
    const dir = join(dataDir, PKI_SUBDIR);
    if (FleetCa.exists(dataDir))
      throw new EdgeguardError(
        'EG_EXISTS',
        `a fleet CA already exists in ${dir}; use it, or choose another --data directory.`,
      );
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const fleet = opts.name ?? 'edgeguard';
    const now = Date.now();

    const rootPair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const rootSigning = await signingKeyFromKeyObject(rootPair.privateKey);
    const rootPublic = await x509.PublicKey.create(rootPair.publicKey.export({ type: 'spki', format: 'der' }));
    const rootName = `CN=${fleet} Root CA, O=${FLEET_ORG}`;
    const root = await x509.X509CertificateGenerator.create({
      serialNumber: newSerial(),
      subject: rootName,
      issuer: rootName,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(now + 20 * 365 * DAY_MS),
      publicKey: rootPublic,
      signingKey: rootSigning,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(true, 1, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(rootPublic),
      ],
    });

    const issuingPair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const issuingPublic = await x509.PublicKey.create(issuingPair.publicKey.export({ type: 'spki', format: 'der' }));
    const issuing = await x509.X509CertificateGenerator.create({
      serialNumber: newSerial(),
      subject: `CN=${fleet} Issuing CA, O=${FLEET_ORG}`,
      issuer: root.subject,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(now + 5 * 365 * DAY_MS),
      publicKey: issuingPublic,
      signingKey: rootSigning,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(issuingPublic),
        await x509.AuthorityKeyIdentifierExtension.create(rootPublic),
      ],
    });

    const write = (name: string, text: string, mode: number) => {
      const p = join(dir, name);
      try {
        writeFileSync(p, text, { mode, flag: 'wx' });
      } catch (e) {
        throw fsError(e, p, 'write');
      }
    };
    write('root-ca.key', encryptPrivateKey(rootPair.privateKey, passphrase), 0o600);
    write('issuing-ca.key', encryptPrivateKey(issuingPair.privateKey, passphrase), 0o600);
    write('root-ca.crt', pemOf(root), 0o644);
    write('issuing-ca.crt', pemOf(issuing), 0o644);
    writeFileSync(join(dataDir, FLEET_CA_FILE), pemOf(root), { mode: 0o644 });
    return new FleetCa(root, issuing, await signingKeyFromKeyObject(issuingPair.privateKey));
  }

  /** Load the CA from DIR/pki, decrypting the issuing key with the passphrase. */
  static async load(dataDir: string, passphrase: string): Promise<FleetCa> {
    const dir = join(dataDir, PKI_SUBDIR);
    if (!FleetCa.exists(dataDir))
      throw new EdgeguardError(
        'EG_NOT_FOUND',
        `no fleet CA in ${dir}; start \`edgeguard server --data ${dataDir}\` once to create it.`,
      );
    const root = new x509.X509Certificate(
      readText(join(dir, 'root-ca.crt'), FILE_CAPS.certificate, 'the root CA certificate'),
    );
    const issuing = new x509.X509Certificate(
      readText(join(dir, 'issuing-ca.crt'), FILE_CAPS.certificate, 'the issuing CA certificate'),
    );
    const keyObject = decryptPrivateKey(
      readText(join(dir, 'issuing-ca.key'), FILE_CAPS.key, 'the issuing CA key'),
      passphrase,
      'the issuing CA key',
    );
    // The key must belong to the certificate: a swapped file would otherwise issue unverifiable certs.
    const spki = Buffer.from(issuing.publicKey.rawData);
    const fromKey = Buffer.from(createPublicKey(keyObject).export({ type: 'spki', format: 'der' }));
    if (!spki.equals(fromKey))
      throw new EdgeguardError(
        'EG_WRONG_KEY',
        `${join(dir, 'issuing-ca.key')} does not belong to issuing-ca.crt; restore the matching pair.`,
      );
    if (!(await issuing.verify({ publicKey: root.publicKey, signatureOnly: true }))) {
      throw new EdgeguardError(
        'EG_SIGNATURE_INVALID',
        `issuing-ca.crt in ${dir} is not signed by root-ca.crt; restore the CA files.`,
      );
    }
    return new FleetCa(root, issuing, await signingKeyFromKeyObject(keyObject));
  }

  static async openOrCreate(dataDir: string, passphrase: string): Promise<{ ca: FleetCa; created: boolean }> {
    if (FleetCa.exists(dataDir)) return { ca: await FleetCa.load(dataDir, passphrase), created: false };
    return { ca: await FleetCa.create(dataDir, passphrase), created: true };
  }

  /** The root certificate, PEM: what devices and admin tools pin (DIR/fleet-ca.pem). */
  get rootPem(): string {
    return pemOf(this.root);
  }

  get issuingPem(): string {
    return pemOf(this.issuing);
  }

  private async issue(params: {
    subject: string;
    role: Role;
    deviceId: string | null;
    publicKey: Uint8Array;
    validity: ValidityOptions;
    defaultDays: number;
    extensions: x509.Extension[];
  }): Promise<IssuedCertificate> {
    if (!isP256Spki(params.publicKey))
      throw new EdgeguardError(
        'EG_PKI',
        'fleet certificates are issued only for ECDSA P-256 keys; generate a P-256 key.',
      );
    const now = Date.now();
    const notBefore = params.validity.notBefore ?? new Date(now - CLOCK_SKEW_MS);
    const notAfter = params.validity.notAfter ?? new Date(now + (params.validity.days ?? params.defaultDays) * DAY_MS);
    if (notAfter.getTime() > this.issuing.notAfter.getTime())
      throw new EdgeguardError(
        'EG_PKI',
        'the requested certificate would outlive the issuing CA; shorten --days or rotate the CA.',
      );
    const publicKey = await x509.PublicKey.create(params.publicKey);
    const serial = newSerial();
    const certificate = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject: params.subject,
      issuer: this.issuing.subject,
      notBefore,
      notAfter,
      publicKey,
      signingKey: this.issuingKey,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        await x509.SubjectKeyIdentifierExtension.create(publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(this.issuing.publicKey),
        ...params.extensions,
      ],
    });
    const pem = pemOf(certificate);
    return {
      certificate,
      pem,
      chainPem: pem + this.issuingPem,
      serial: normalizeSerial(serial),
      subject: certificate.subject,
      role: params.role,
      deviceId: params.deviceId,
      notBefore: certificate.notBefore,
      notAfter: certificate.notAfter,
    };
  }

  async issueDeviceCertificate(
    p: { deviceId: string; keyProvider: 'tpm' | 'software'; publicKey: Uint8Array } & ValidityOptions,
  ): Promise<IssuedCertificate> {
    if (!DEVICE_ID_RE.test(p.deviceId)) throw new EdgeguardError('EG_PKI', `"${p.deviceId}" is not a fleet device id.`);
    return this.issue({
      subject: `CN=${p.deviceId}, OU=device, O=${FLEET_ORG}`,
      role: 'device',
      deviceId: p.deviceId,
      publicKey: p.publicKey,
      validity: p,
      defaultDays: DEFAULT_DEVICE_DAYS,
      extensions: [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension([
          { type: 'url', value: `${DEVICE_URI_PREFIX}${p.deviceId}` },
          { type: 'url', value: `${KEY_PROVIDER_URI_PREFIX}${p.keyProvider}` },
        ]),
      ],
    });
  }

  async issueAdminCertificate(
    p: { name: string; publicKey: Uint8Array } & ValidityOptions,
  ): Promise<IssuedCertificate> {
    if (!/^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$/.test(p.name))
      throw new EdgeguardError(
        'EG_USAGE',
        'an admin name is 1 to 64 letters, digits, spaces, dots, dashes, underscores or @.',
      );
    return this.issue({
      subject: `CN=${p.name}, OU=admin, O=${FLEET_ORG}`,
      role: 'admin',
      deviceId: null,
      publicKey: p.publicKey,
      validity: p,
      defaultDays: DEFAULT_ADMIN_DAYS,
      extensions: [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      ],
    });
  }

  async issueServerCertificate(
    p: { hostnames: string[]; publicKey: Uint8Array } & ValidityOptions,
  ): Promise<IssuedCertificate> {
    const first = p.hostnames[0];
    if (first === undefined)
      throw new EdgeguardError('EG_USAGE', 'a server certificate needs at least one host name or IP address.');
    const names = p.hostnames.map((h) =>
      /^[0-9.]+$/.test(h) || h.includes(':') ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h },
    );
    return this.issue({
      subject: `CN=${first}, OU=server, O=${FLEET_ORG}`,
      role: 'server',
      deviceId: null,
      publicKey: p.publicKey,
      validity: p,
      defaultDays: DEFAULT_SERVER_DAYS,
      extensions: [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(names),
      ],
    });
  }

  /**
   * A CRL (RFC 5280 section 5) over the revoked serials, signed by the issuing CA, valid for
   * `hours` (default 24): relying parties other than our server refresh it from GET /v1/crl.
   */
  async createCrl(
    entries: Array<{ serial: string; revokedAt: Date; reason?: string | null }>,
    hours = 24,
  ): Promise<x509.X509Crl> {
    const now = Date.now();
    return x509.X509CrlGenerator.create({
      issuer: this.issuing.subject,
      thisUpdate: new Date(now),
      nextUpdate: new Date(now + hours * 3600 * 1000),
      signingKey: this.issuingKey,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        await x509.AuthorityKeyIdentifierExtension.create(this.issuing.publicKey),
        // cRLNumber (RFC 5280 section 5.2.3): monotonically increasing; seconds since the epoch.
        new x509.Extension('2.5.29.20', false, integer(Math.floor(now / 1000))),
      ],
      entries: entries.map((e) => ({
        serialNumber: e.serial.length % 2 === 1 ? '0' + e.serial : e.serial,
        revocationDate: e.revokedAt,
        reason: crlReason(e.reason),
      })),
    });
  }
}

/** PEM with the label OpenSSL expects for CRLs (RFC 7468 section 6). */
export function crlPem(crl: x509.X509Crl): string {
  return x509.PemConverter.encode(crl.rawData, 'X509 CRL') + '\n';
}

function crlReason(reason: string | null | undefined): x509.X509CrlReason {
  const r = (x509.X509CrlReason as unknown as Record<string, number>)[reason ?? 'unspecified'];
  return (r ?? x509.X509CrlReason.unspecified) as x509.X509CrlReason;
}
