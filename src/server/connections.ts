/**
 * Per-address connection limits, applied to the raw TCP connection before the TLS handshake costs
 * anything (the server accepts paused: not a byte is read until a connection is admitted).
 *
 * - A cap on open connections: a client that opens connections and sends nothing (or sends
 *   slowly) would otherwise hold file descriptors until the process runs out. Beyond the cap a new
 *   connection is closed unread after `overCapCloseDelayMs`: closed at once, a client in a loop
 *   reconnects at once, hundreds of times a second, each try an accept and a close. At most
 *   `overCapHeldMax` are held so, over all addresses (beyond, closed at once), which bounds the
 *   file descriptors the delay costs.
 * - A rate of new connections (a token bucket per address): every admitted connection costs a TLS
 *   handshake (about a millisecond of CPU with the request it carries), and an anonymous client
 *   whose requests are refused with `connection: close` (401 before the body, 413, 408, 429) can
 *   reconnect at once. A connection over its address's rate waits, accepted but unread, until the
 *   bucket admits it, first come first served (src/net/connection-gate.ts), and is closed if it
 *   waited `waitMs`. Waiting rather than a reset at once matters: a client reset at once
 *   reconnects at once, as fast as it can, and every try still costs an accept and a close; one
 *   that waits is held to the rate. A legitimate client behind a busy address is served late, not
 *   refused. Legitimate clients keep their connections alive and open new ones rarely.
 */
import type { Server, Socket } from 'node:net';
import type { Counter, Gauge } from 'prom-client';
import { ConnectionGate, interceptConnections } from '../net/index.ts';

export interface ConnectionLimits {
  /** Open connections one address may hold, waiting ones included. */
  perAddress: number;
  /** New connections one address may open per second, on average. */
  ratePerSecond: number;
  /** New connections one address may open at once, before the rate applies. */
  burst: number;
  /** How long a connection over its address's rate may wait to be admitted, ms; then it is closed. */
  waitMs: number;
  /** A connection beyond its address's cap is closed, unread, after this long. */
  overCapCloseDelayMs: number;
  /** Connections beyond their address's cap held for that delay, over all addresses; beyond, closed at once. */
  overCapHeldMax: number;
}

export interface ConnectionMetrics {
  /** Closed without being admitted: `per_address` (the cap), `rate` (waited `waitMs`). */
  refused: Counter<'reason'>;
  /** Connections accepted and waiting for their address's rate, all addresses together. */
  waiting: Gauge;
}

interface AddressState {
  open: number;
  gate: ConnectionGate;
}

/** Addresses tracked before idle ones (nothing open, bucket full again) are forgotten. */
const SWEEP_ABOVE = 1024;

export interface ConnectionLimiter {
  /** Close every waiting connection, and every new one from now on (the server is closing). */
  close(): void;
}

export function limitConnectionsPerAddress(
  server: Server,
  limits: ConnectionLimits,
  metrics: ConnectionMetrics,
): ConnectionLimiter {
  const addresses = new Map<string, AddressState>();
  let waiting = 0;
  let closed = false;
  /** Connections beyond their cap, held until their delayed close. */
  const held = new Set<Socket>();
  const refuseOverCap = (socket: Socket) => {
    metrics.refused.inc({ reason: 'per_address' });
    if (held.size >= limits.overCapHeldMax || limits.overCapCloseDelayMs <= 0) {
      socket.destroy();
      return;
    }
    held.add(socket);
    // Unread (accepted paused), so only a reset can come; it must not go unhandled.
    socket.on('error', () => undefined);
    const timer = setTimeout(() => socket.destroy(), limits.overCapCloseDelayMs);
    socket.once('close', () => {
      clearTimeout(timer);
      held.delete(socket);
    });
  };
  const newState = (): AddressState => {
    let mine = 0;
    return {
      open: 0,
      gate: new ConnectionGate({
        ratePerSecond: limits.ratePerSecond,
        burst: limits.burst,
        waitMs: limits.waitMs,
        // The cap bounds the waiting connections too: they count as open.
        maxWaiting: limits.perAddress,
        onRefused: () => metrics.refused.inc({ reason: 'rate' }),
        onWaiting: (n) => {
          waiting += n - mine;
          mine = n;
          metrics.waiting.set(waiting);
        },
      }),
    };
  };
  const sweep = () => {
    for (const [address, state] of addresses) if (state.open === 0 && state.gate.idle()) addresses.delete(address);
  };
  interceptConnections(server, (socket: Socket, admit) => {
    if (closed) {
      socket.destroy();
      return;
    }
    const address = socket.remoteAddress ?? 'unknown';
    let state = addresses.get(address);
    if (state === undefined) {
      if (addresses.size >= SWEEP_ABOVE) sweep();
      state = newState();
      addresses.set(address, state);
    }
    if (state.open >= limits.perAddress) {
      refuseOverCap(socket);
      return;
    }
    state.open += 1;
    const counted = state;
    socket.once('close', () => {
      counted.open -= 1;
    });
    state.gate.offer(socket, () => admit(socket));
  });
  return {
    close() {
      closed = true;
      for (const state of addresses.values()) state.gate.close();
      for (const socket of held) socket.destroy();
    },
  };
}
