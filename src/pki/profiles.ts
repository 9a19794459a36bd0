/**
 * Certificate profiles of the fleet PKI (RFC 5280 section 4): who a certificate says its holder
 * is. The role sits in the subject's OU (issued only by our issuing CA, so it cannot be chosen by
 * the holder); a device certificate also names the device and its key provider in SAN URIs.
 *
 *   root CA     CN=<fleet> Root CA, O=edgeguard fleet           CA, pathLen 1, 20 years
 *   issuing CA  CN=<fleet> Issuing CA, O=edgeguard fleet        CA, pathLen 0, 5 years
 *   device      CN=<device id>, OU=device, O=edgeguard fleet    clientAuth, 30 days
 *               SAN URI urn:edgeguard:device:<id>, urn:edgeguard:key-provider:<tpm|software>
 *   admin       CN=<name>, OU=admin, O=edgeguard fleet          clientAuth, 90 days
 *   server      CN=<first host>, OU=server, O=edgeguard fleet   serverAuth, SAN DNS/IP, 90 days
 */
import { EdgeguardError } from '../errors/index.ts';
import { x509 } from './crypto.ts';

export const FLEET_ORG = 'edgeguard fleet';
export type Role = 'device' | 'admin' | 'server';

export const DEVICE_URI_PREFIX = 'urn:edgeguard:device:';
export const KEY_PROVIDER_URI_PREFIX = 'urn:edgeguard:key-provider:';

export const DEFAULT_DEVICE_DAYS = 30;
export const DEFAULT_ADMIN_DAYS = 90;
export const DEFAULT_SERVER_DAYS = 90;

/** Device ids: what the server generates; checked wherever one arrives from outside. */
export const DEVICE_ID_RE = /^dev-[0-9a-f]{16}$/;

export interface CertificateIdentity {
  role: Role;
  /** CN: the device id for devices, the person or tool name for admins. */
  name: string;
  deviceId?: string;
  keyProvider?: 'tpm' | 'software';
  /** Serial in canonical form (lowercase hex, no leading zeros). */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export function normalizeSerial(hex: string): string {
  const s = hex
    .toLowerCase()
    .replace(/[^0-9a-f]/g, '')
    .replace(/^0+/, '');
  return s.length === 0 ? '0' : s;
}

function dnValue(name: x509.Name, type: string): string | undefined {
  const values = name.getField(type);
  if (values.length !== 1) return undefined;
  return values[0];
}

/**
 * Read role and names out of a certificate we issued. The caller has already checked the chain;
 * this only refuses certificates whose profile is not one of ours.
 */
export function identityOf(cert: x509.X509Certificate): CertificateIdentity {
  const subject = new x509.Name(cert.subject);
  const role = dnValue(subject, 'OU');
  const cn = dnValue(subject, 'CN');
  const org = dnValue(subject, 'O');
  if (org !== FLEET_ORG || cn === undefined || (role !== 'device' && role !== 'admin' && role !== 'server')) {
    throw new EdgeguardError(
      'EG_FORBIDDEN',
      'the client certificate does not carry an edgeguard fleet role; use a device or admin certificate issued by this fleet.',
    );
  }
  const id: CertificateIdentity = {
    role,
    name: cn,
    serial: normalizeSerial(cert.serialNumber),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
  };
  if (role === 'device') {
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
    const uris = san?.names.items.filter((n) => n.type === 'url').map((n) => n.value) ?? [];
    const deviceUri = uris.find((u) => u.startsWith(DEVICE_URI_PREFIX));
    const kp = uris.find((u) => u.startsWith(KEY_PROVIDER_URI_PREFIX))?.slice(KEY_PROVIDER_URI_PREFIX.length);
    const deviceId = deviceUri?.slice(DEVICE_URI_PREFIX.length);
    if (
      deviceId === undefined ||
      deviceId !== cn ||
      !DEVICE_ID_RE.test(deviceId) ||
      (kp !== 'tpm' && kp !== 'software')
    ) {
      throw new EdgeguardError(
        'EG_FORBIDDEN',
        'the device certificate does not follow the fleet device profile; re-enroll the device.',
      );
    }
    id.deviceId = deviceId;
    id.keyProvider = kp;
  }
  return id;
}
