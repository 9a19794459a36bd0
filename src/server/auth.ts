/**
 * Who is calling: the TLS client certificate, checked in three layers.
 *   1. The TLS handshake (OpenSSL): chain to the fleet root, validity dates. The server asks for a
 *      certificate but does not abort the handshake without one, so that the enrollment endpoints
 *      stay reachable; every other route refuses an unverified peer here.
 *   2. The profile (pki/profiles.ts): role and device id from the certificate, parsed once per
 *      TLS connection.
 *   3. The store, on every request: the serial must be one we issued and not revoked, and a
 *      device must be approved. Revocation therefore takes effect on the next request, even on a
 *      kept-alive connection, and on every replica sharing the database.
 */
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { EdgeguardError } from '../errors/index.ts';
import { identityOf, x509, type CertificateIdentity } from '../pki/index.ts';
import type { DeviceRecord, Store } from '../store/index.ts';
import type { ServerMetrics } from './metrics.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the certificate checks. */
    identity?: CertificateIdentity;
    /** The verified fleet certificate presented, even when refused for its role or status (for audit refusals). */
    presented?: CertificateIdentity;
    /** For device certificates: the device record read during authentication. */
    device?: DeviceRecord;
  }
}

const perSocket = new WeakMap<TLSSocket, CertificateIdentity | EdgeguardError>();

function explainTlsError(code: string | undefined): string {
  switch (code) {
    case 'CERT_HAS_EXPIRED':
      return 'the client certificate has expired; renew it (devices renew at two thirds of the lifetime) or issue a new one.';
    case 'CERT_NOT_YET_VALID':
      return 'the client certificate is not valid yet; check the clock of the client.';
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return "the client certificate was not issued by this fleet's CA; use a certificate from `edgeguard admin cert` or device enrollment.";
    default:
      return `the client certificate did not verify (${code ?? 'unknown reason'}); use a certificate issued by this fleet.`;
  }
}

const certifiedSockets = new WeakMap<TLSSocket, boolean>();

/**
 * Whether the connection presented a certificate that chains to the fleet root (layer 1 only),
 * kept per connection: the server speaks TLS 1.3 only, where a connection's peer certificate
 * cannot change after the handshake, and `getPeerCertificate` builds a new object on every call
 * (~40 us, once per request in the response hook before this).
 */
export function presentsFleetCertificate(socket: TLSSocket): boolean {
  let certified = certifiedSockets.get(socket);
  if (certified === undefined) {
    certified = socket.authorized === true && socket.getPeerCertificate?.(false)?.raw !== undefined;
    certifiedSockets.set(socket, certified);
  }
  return certified;
}

/** Layers 1 and 2, cached per connection. */
function connectionIdentity(socket: TLSSocket): CertificateIdentity {
  const cached = perSocket.get(socket);
  if (cached instanceof EdgeguardError) throw cached;
  if (cached) return cached;
  let result: CertificateIdentity | EdgeguardError;
  const peer = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate(false) : undefined;
  if (!peer || !peer.raw) {
    result = new EdgeguardError(
      'EG_UNAUTHORIZED',
      'this endpoint needs a client certificate; call it with a device or admin certificate (--cert, --key).',
      { details: { reason: 'no_certificate' } },
    );
  } else if (!socket.authorized) {
    const code = String(socket.authorizationError ?? '');
    result = new EdgeguardError('EG_UNAUTHORIZED', explainTlsError(code), {
      details: { reason: code === 'CERT_HAS_EXPIRED' ? 'expired' : 'untrusted', tls: code },
    });
  } else {
    try {
      result = identityOf(new x509.X509Certificate(peer.raw));
    } catch (e) {
      result =
        e instanceof EdgeguardError
          ? e
          : new EdgeguardError('EG_FORBIDDEN', 'the client certificate could not be read.', { cause: e });
    }
  }
  perSocket.set(socket, result);
  if (result instanceof EdgeguardError) throw result;
  return result;
}

export type Requirement = 'device' | 'admin' | 'device-or-admin';

export function makeAuthenticator(store: Store, metrics: ServerMetrics) {
  return async function authenticate(request: FastifyRequest, need: Requirement): Promise<CertificateIdentity> {
    try {
      const id = connectionIdentity(request.raw.socket as TLSSocket);
      request.presented = id;
      // The handshake checked the dates once; a kept-alive connection can outlive the certificate.
      if (Date.now() > id.notAfter.getTime()) {
        throw new EdgeguardError('EG_UNAUTHORIZED', explainTlsError('CERT_HAS_EXPIRED'), {
          details: { reason: 'expired' },
        });
      }
      const roleOk = need === 'device-or-admin' ? id.role === 'device' || id.role === 'admin' : id.role === need;
      if (!roleOk) {
        throw new EdgeguardError(
          'EG_FORBIDDEN',
          need === 'admin'
            ? 'this endpoint needs an admin certificate; a device or server certificate is not enough.'
            : 'this endpoint is for fleet devices; use a device certificate.',
          { details: { reason: 'role' } },
        );
      }
      // Layer 3: every request (one indexed query).
      const { status, device } = await store.authLookup(id.serial);
      if (status !== 'good') {
        throw new EdgeguardError(
          'EG_UNAUTHORIZED',
          status === 'revoked'
            ? 'the client certificate has been revoked.'
            : 'the client certificate is not one this fleet issued (unknown serial).',
          { details: { reason: status } },
        );
      }
      if (id.role === 'device') {
        if (!device || device.id !== id.deviceId || device.status !== 'approved') {
          throw new EdgeguardError(
            'EG_UNAUTHORIZED',
            `device ${id.deviceId} is ${device?.status ?? 'unknown'}; it cannot use the fleet API.`,
            { details: { reason: `device_${device?.status ?? 'unknown'}` } },
          );
        }
        request.device = device;
      }
      request.identity = id;
      return id;
    } catch (e) {
      const reason = (e as EdgeguardError).details?.reason;
      metrics.authRefusals.inc({ reason: typeof reason === 'string' ? reason : 'other' });
      throw e;
    }
  };
}
