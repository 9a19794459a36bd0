/**
 * How route modules join the control plane (see README-extending.md): a plugin is an async
 * function given the fastify instance (already under the server's TLS, error handling, OpenAPI and
 * metrics) and the control-plane context (store, CA, auth pre-handlers). Which plugins run is
 * decided in control-plane.ts and passed to `buildServer({ plugins })`; there is no global registry.
 */
import type { FastifyInstance } from 'fastify';
import type { ControlPlaneContext } from './context.ts';

export interface ServerPlugin {
  /** Unique name, for logs and to avoid double registration. */
  name: string;
  register(app: FastifyInstance, ctx: ControlPlaneContext): Promise<void>;
}
