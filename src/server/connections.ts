/**
 * Per-address connection limits, applied on the raw TCP 'connection' event, before the TLS
 * handshake costs anything: a connection refused here costs the server an accept and a close.
 *
 * - A cap on open connections: a client that opens connections and sends nothing (or sends
 *   slowly) would otherwise hold file descriptors until the process runs out.
 * - A rate of new connections (a token bucket): every accepted connection costs a TLS handshake
 *   (about a millisecond of CPU with the request it carries), and an anonymous client whose
 *   requests are refused with `connection: close` (401 before the body, 413, 408) can reconnect
 *   at once, so without a rate the refusals themselves are the expensive part of a flood.
 *   Legitimate clients keep their connections alive and open new ones rarely.
 */
import type { Server } from 'node:net';
import type { Counter } from 'prom-client';

export interface ConnectionLimits {
  /** Open connections one address may hold. */
  perAddress: number;
  /** New connections one address may open per second, on average. */
  ratePerSecond: number;
  /** New connections one address may open at once, before the rate applies. */
  burst: number;
}

interface AddressState {
  open: number;
  /** New connections the address may still open now (refilled at ratePerSecond up to burst). */
  tokens: number;
  at: number;
}

/** Addresses tracked before idle ones (nothing open, bucket full again) are forgotten. */
const SWEEP_ABOVE = 1024;

export function limitConnectionsPerAddress(server: Server, limits: ConnectionLimits, refused: Counter<'reason'>): void {
  const addresses = new Map<string, AddressState>();
  const refill = (state: AddressState, now: number) => {
    state.tokens = Math.min(limits.burst, state.tokens + ((now - state.at) * limits.ratePerSecond) / 1000);
    state.at = now;
  };
  const sweep = (now: number) => {
    for (const [address, state] of addresses) {
      refill(state, now);
      if (state.open === 0 && state.tokens >= limits.burst) addresses.delete(address);
    }
  };
  server.on('connection', (socket) => {
    const address = socket.remoteAddress ?? 'unknown';
    const now = performance.now();
    let state = addresses.get(address);
    if (state === undefined) {
      if (addresses.size >= SWEEP_ABOVE) sweep(now);
      state = { open: 0, tokens: limits.burst, at: now };
      addresses.set(address, state);
    } else refill(state, now);
    if (state.open >= limits.perAddress) {
      refused.inc({ reason: 'per_address' });
      socket.destroy();
      return;
    }
    if (state.tokens < 1) {
      refused.inc({ reason: 'rate' });
      socket.destroy();
      return;
    }
    state.tokens -= 1;
    state.open += 1;
    const counted = state;
    socket.once('close', () => {
      counted.open -= 1;
    });
  });
}
