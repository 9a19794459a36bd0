/**
 * How other modules add routes to the control plane (see README-extending.md): a plugin is an async
 * function given the fastify instance (already under the server's TLS, error handling, OpenAPI and
 * metrics) and the control-plane context (store, CA, auth pre-handlers). Register it at module load
 * with `registerServerPlugin`, or pass it to `buildServer({ plugins })`.
 */
import type { FastifyInstance } from 'fastify';
import type { ControlPlaneContext } from './context.ts';

export interface ServerPlugin {
  /** Unique name, for logs and to avoid double registration. */
  name: string;
  register(app: FastifyInstance, ctx: ControlPlaneContext): Promise<void>;
}

const REGISTERED: ServerPlugin[] = [];

export function registerServerPlugin(plugin: ServerPlugin): void {
  if (REGISTERED.some((p) => p.name === plugin.name)) return;
  REGISTERED.push(plugin);
}

export function registeredServerPlugins(): readonly ServerPlugin[] {
  return REGISTERED;
}
