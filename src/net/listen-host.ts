/**
 * The address a server binds for a configured host. Fastify binds every address `localhost`
 * resolves to (127.0.0.1 and ::1), the second with a server of its own that it creates after
 * `listen`: the connection limits put on the first (src/net/connection-gate.ts, the control
 * plane's per-address limits) would not see it, nor its timeouts. `localhost` is therefore bound as
 * 127.0.0.1 alone; name ::1 to serve IPv6 loopback instead.
 */
export function listenHost(host: string): string {
  return host === 'localhost' ? '127.0.0.1' : host;
}
