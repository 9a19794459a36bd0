/** The demo's hostile mirror of a release repository (release-step.ts). */
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve, sep } from 'node:path';

/**
 * A static mirror of a release repository (any file host can serve one) that replays an old
 * timestamp.json and serves every other file as published: the demo's rollback attacker.
 */
export async function startReplayingMirror(
  repository: string,
  oldTimestamp: Buffer,
): Promise<{ url: string; server: Server }> {
  const root = resolve(repository);
  const server = createServer((req, res) => {
    const send = (status: number, body: Buffer) => res.writeHead(status).end(body);
    let path: string;
    try {
      path = resolve(root, `.${decodeURIComponent(new URL(req.url ?? '/', 'http://mirror').pathname)}`);
    } catch {
      return send(400, Buffer.alloc(0));
    }
    if (path === join(root, 'metadata', 'timestamp.json')) return send(200, oldTimestamp);
    if (!path.startsWith(root + sep)) return send(404, Buffer.alloc(0));
    readFile(path).then(
      (b) => send(200, b),
      () => send(404, Buffer.alloc(0)),
    );
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}
