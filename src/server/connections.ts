/**
 * Per-address connection cap: a client that opens connections and sends nothing (or sends slowly)
 * would otherwise hold file descriptors until the process runs out. Counted on the raw TCP
 * 'connection' event, before the TLS handshake costs anything.
 */
import type { Server } from 'node:net';
import type { Counter } from 'prom-client';

export function capConnectionsPerAddress(server: Server, max: number, refused: Counter<'reason'>): void {
  const open = new Map<string, number>();
  server.on('connection', (socket) => {
    const address = socket.remoteAddress ?? 'unknown';
    const count = open.get(address) ?? 0;
    if (count >= max) {
      refused.inc({ reason: 'per_address' });
      socket.destroy();
      return;
    }
    open.set(address, count + 1);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left === 0) open.delete(address);
      else open.set(address, left);
    });
  });
}
