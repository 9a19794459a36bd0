/**
 * The two steps every YAML configuration takes (agent.yaml, the guard's, the server's): the text
 * parsed as YAML (aliases bounded), then the value checked against its schema, each failure an
 * `EG_CONFIG` that names the file and, for a schema failure, the path to the first bad value.
 */
import { parse as parseYaml } from 'yaml';
import type { ZodType } from 'zod';
import { EdgeguardError } from '../errors/index.ts';

/** `text` as a YAML value; `where` names it in the error. */
export function parseYamlText(text: string, where: string): unknown {
  try {
    return parseYaml(text, { maxAliasCount: 16 });
  } catch (e) {
    throw new EdgeguardError('EG_CONFIG', `${where} is not valid YAML (${(e as Error).message.split('\n')[0]}).`, {
      cause: e,
    });
  }
}

/** `value` (absent: an empty mapping) checked against `schema`. */
export function checkConfig<T>(schema: ZodType<T>, value: unknown, where: string): T {
  const parsed = schema.safeParse(value ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new EdgeguardError(
      'EG_CONFIG',
      `${where} is invalid at ${issue?.path.join('.') || 'the top level'}: ${issue?.message ?? 'schema mismatch'}.`,
    );
  }
  return parsed.data;
}
