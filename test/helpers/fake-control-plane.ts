/**
 * A control plane that answers what a test tells it to: real TLS on 127.0.0.1, with a server
 * certificate from a throwaway fleet CA (whose root the client pins), and a handler per request.
 * How the tests play a compromised or broken control plane to the device and CLI code.
 */
import { generateKeyPairSync } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { FleetCa } from '../../src/pki/index.ts';
import { tempDir } from './workspace.ts';

export interface FakeControlPlane {
  url: string;
  /** The fleet root, PEM (what a client pins). */
  caPem: string;
  /** A client certificate chain and key from the same CA (the server does not ask for one). */
  client: { cert: string; key: string };
}

export type FakeHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** Answer `status` with `body` as JSON. */
export function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

export async function startFakeControlPlane(t: TestContext, handler: FakeHandler): Promise<FakeControlPlane> {
  const dir = await tempDir(t, 'eg-fake-cp-');
  const ca = await FleetCa.create(dir, 'fake control plane test');
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issued = await ca.issueServerCertificate({
    hostnames: ['127.0.0.1'],
    publicKey: pair.publicKey.export({ type: 'spki', format: 'der' }),
  });
  const key = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const server = createServer({ key, cert: issued.chainPem }, handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    caPem: ca.rootPem,
    client: { cert: issued.chainPem, key },
  };
}
