/**
 * New connections handed to a server at a bounded rate, so that a client reconnecting as fast as it
 * can (each connection refused at its first bad bytes, then opened again) cannot take the CPU from
 * the connections already being served. A token bucket (`ratePerSecond`, up to `burst` at once)
 * admits new connections; one that finds no token waits, accepted but unread (the server does not
 * read a byte from it until it is admitted: `pauseOnConnect`), first come first served.
 * Connections already admitted (a keep-alive client's) are never gated: their next request is read
 * at once, whatever the crowd of new ones. A waiting connection is closed after `waitMs`; beyond
 * `maxWaiting` waiting, a new one is closed at once.
 *
 * The agent puts one gate in front of its whole server (gateConnections; its clients are local,
 * all from 127.0.0.1); the control plane keeps one per remote address (src/server/connections.ts,
 * through interceptConnections).
 */
import type { Server, Socket } from 'node:net';

export interface ConnectionGateOptions {
  /** New connections admitted per second, sustained. */
  ratePerSecond: number;
  /** New connections admitted at once after a quiet spell. */
  burst: number;
  /** How long a new connection may wait to be admitted, ms; then it is closed. */
  waitMs: number;
  /** Connections waiting at most; more are closed at once. */
  maxWaiting: number;
  /** Called when a connection is closed without being admitted (too many waiting, or waited too long). */
  onRefused?: () => void;
  /** Called with the number waiting whenever it changes (a metric). */
  onWaiting?: (n: number) => void;
}

interface Waiter {
  socket: Socket;
  admit: () => void;
  timer: NodeJS.Timeout;
  gone: () => void;
}

const ignore = () => undefined;

export class ConnectionGate {
  private tokens: number;
  private last = performance.now();
  private queue: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly o: ConnectionGateOptions) {
    this.tokens = o.burst;
  }

  get waiting(): number {
    return this.queue.length;
  }

  /** Nobody waiting and the bucket full again: the gate is as new (a per-address map may drop it). */
  idle(): boolean {
    this.refill();
    return this.queue.length === 0 && this.tokens >= this.o.burst;
  }

  /** `admit` is called once the connection may be read (at once when a token is free). */
  offer(socket: Socket, admit: () => void): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.refill();
    if (this.queue.length === 0 && this.tokens >= 1) {
      this.tokens--;
      admit();
      return;
    }
    if (this.queue.length >= this.o.maxWaiting) {
      this.refuse(socket);
      return;
    }
    const waiter: Waiter = {
      socket,
      admit,
      timer: setTimeout(() => {
        this.remove(waiter);
        this.refuse(socket);
      }, this.o.waitMs),
      // The client gave up while waiting.
      gone: () => this.remove(waiter),
    };
    // An unread socket can still be reset by its client: its error must not go unhandled.
    socket.on('error', ignore);
    socket.once('close', waiter.gone);
    this.queue.push(waiter);
    this.o.onWaiting?.(this.queue.length);
    this.schedule();
  }

  /** Every waiting connection closed; new ones are closed at once from now on. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    const queue = this.queue;
    this.queue = [];
    for (const w of queue) {
      clearTimeout(w.timer);
      w.socket.destroy();
    }
    this.o.onWaiting?.(0);
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(this.o.burst, this.tokens + ((now - this.last) * this.o.ratePerSecond) / 1000);
    this.last = now;
  }

  /** Wake up when the next token is due, if anybody waits. */
  private schedule(): void {
    if (this.timer || this.queue.length === 0) return;
    const ms = Math.max(1, Math.ceil(((1 - this.tokens) * 1000) / this.o.ratePerSecond));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.drain();
    }, ms);
  }

  private drain(): void {
    this.refill();
    while (this.queue.length > 0 && this.tokens >= 1) {
      const w = this.queue.shift()!;
      clearTimeout(w.timer);
      w.socket.removeListener('close', w.gone);
      w.socket.removeListener('error', ignore);
      this.tokens--;
      w.admit();
    }
    this.o.onWaiting?.(this.queue.length);
    this.schedule();
  }

  private remove(w: Waiter): void {
    const i = this.queue.indexOf(w);
    if (i < 0) return;
    this.queue.splice(i, 1);
    clearTimeout(w.timer);
    this.o.onWaiting?.(this.queue.length);
  }

  private refuse(socket: Socket): void {
    this.o.onRefused?.();
    socket.destroy();
  }
}

/**
 * Take over `server`'s new connections: the server accepts them paused (`pauseOnConnect`, so not a
 * byte is read), and each goes to `offer`, which decides its fate. `admit(socket)` hands it to the
 * listeners the server had (Node's HTTP or TLS handling, which read and parse a connection from
 * its 'connection' event on) and resumes it; a connection `offer` does not admit, it must close.
 */
export function interceptConnections(
  server: Server,
  offer: (socket: Socket, admit: (socket: Socket) => void) => void,
): void {
  const listeners = server.listeners('connection') as Array<(socket: Socket) => void>;
  server.removeAllListeners('connection');
  // net.Server reads this when it accepts: a paused socket is not read until resumed.
  (server as Server & { pauseOnConnect: boolean }).pauseOnConnect = true;
  const admit = (socket: Socket) => {
    if (socket.destroyed) return;
    for (const listener of listeners) listener.call(server, socket);
    socket.resume();
  };
  server.on('connection', (socket: Socket) => offer(socket, admit));
}

/** Put `gate` in front of `server`'s own connection handling: one gate for every connection. */
export function gateConnections(server: Server, gate: ConnectionGate): void {
  interceptConnections(server, (socket, admit) => gate.offer(socket, () => admit(socket)));
}
