/**
 * A plain static file server on 127.0.0.1 (node:http) for a release repository, with a map of
 * answers that replace files: how the attack tests play a malicious mirror.
 */
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, normalize } from 'node:path';
import type { AddressInfo } from 'node:net';

export interface StaticServer {
  url: string;
  /** URL path (e.g. /metadata/timestamp.json) -> the bytes served instead of the file. */
  overrides: Map<string, Buffer>;
}

export async function serveDirectory(t: { after(fn: () => Promise<void>): void }, root: string): Promise<StaticServer> {
  const overrides = new Map<string, Buffer>();
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const override = overrides.get(path);
    const body = override
      ? Promise.resolve(override)
      : readFile(join(root, normalize(path).replace(/^(\.\.[/\\])+/, '')));
    body.then(
      (bytes) => res.writeHead(200, { 'content-length': bytes.length }).end(bytes),
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, overrides };
}
