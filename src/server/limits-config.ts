/**
 * `edgeguard server --config FILE`: the server's YAML configuration, today its `limits:` (connection
 * and request limits, src/server/context.ts). Strict: an unknown key or a value out of range is
 * refused with the path to it, so a misspelt limit is not silently the default. A server behind a
 * reverse proxy sees one address for every client and must raise the per-address limits here (or
 * put them in the proxy).
 */
import { z } from 'zod';
import { checkConfig, parseYamlText } from '../config/index.ts';
import { FILE_CAPS, readBoundedText } from '../errors/index.ts';
import type { ServerLimits } from './context.ts';

const ms = (max: number) => z.number().int().min(0).max(max);
const count = (max: number) => z.number().int().min(1).max(max);
const HOUR = 3_600_000;

const limitsSchema = z
  .object({
    requestTimeoutMs: ms(HOUR).min(1000),
    headersTimeoutMs: ms(HOUR).min(1000),
    keepAliveTimeoutMs: ms(HOUR).min(1000),
    connectionTimeoutMs: ms(HOUR).min(1000),
    connectionsPerAddress: count(1_000_000),
    overCapCloseDelayMs: ms(60_000),
    overCapHeldMax: z.number().int().min(0).max(1_000_000),
    connectionRatePerAddress: z.number().positive().max(1_000_000),
    connectionBurstPerAddress: count(1_000_000),
    connectionWaitMs: ms(HOUR),
    anonymousBodyBytes: count(16 * 1024 * 1024).min(1024),
  })
  .strict()
  .partial() satisfies z.ZodType<Partial<ServerLimits>>;

const serverConfigSchema = z.object({ limits: limitsSchema.optional() }).strict();

export interface ServerFileConfig {
  limits?: Partial<ServerLimits>;
}

/** Parses the server's YAML configuration; `where` names it in errors. */
export function parseServerConfigYaml(text: string, where: string): ServerFileConfig {
  return checkConfig(serverConfigSchema, parseYamlText(text, where), where) as ServerFileConfig;
}

export async function loadServerConfig(file: string): Promise<ServerFileConfig> {
  return parseServerConfigYaml(await readBoundedText(file, FILE_CAPS.config, 'read the server configuration'), file);
}
