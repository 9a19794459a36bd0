/**
 * Public face of net: how the agent's and the control plane's servers admit new connections (a
 * token bucket with a queue of accepted, unread connections in front of Node's own handling).
 */
export {
  ConnectionGate,
  gateConnections,
  interceptConnections,
  type ConnectionGateOptions,
} from './connection-gate.ts';
export { listenHost } from './listen-host.ts';
