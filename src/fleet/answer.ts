import type { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';

/** A control plane's answer checked against its schema; EG_SERVER naming `what` when it does not fit. */
export function parseAnswer<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
  const r = schema.safeParse(body);
  if (!r.success)
    throw new EdgeguardError(
      'EG_SERVER',
      `the control plane's ${what} answer is malformed (${r.error.issues[0]?.message}); check that both sides run the same release.`,
    );
  return r.data;
}
