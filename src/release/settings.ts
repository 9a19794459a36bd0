/** The release workspace's settings (release.json): how long each role's metadata stays valid. */
import { z } from 'zod';
import { EdgeguardError, FILE_CAPS, readBoundedText } from '../errors/index.ts';
import type { RoleName } from './layout.ts';

const DAY = 24 * 3600;

/** TUF's usual spread: root rarely re-signed, timestamp re-signed often by the online key. */
export const DEFAULT_EXPIRY_SECONDS: Record<RoleName, number> = {
  root: 365 * DAY,
  targets: 90 * DAY,
  snapshot: 7 * DAY,
  timestamp: 1 * DAY,
};

const positive = z.number().int().positive();
const settingsSchema = z
  .object({
    expirySeconds: z.object({ root: positive, targets: positive, snapshot: positive, timestamp: positive }).strict(),
    thresholds: z.object({ root: positive, targets: positive, snapshot: positive, timestamp: positive }).strict(),
  })
  .strict();

export type ReleaseSettings = z.infer<typeof settingsSchema>;

export async function readSettings(path: string): Promise<ReleaseSettings> {
  const text = await readBoundedText(
    path,
    FILE_CAPS.config,
    'read the release settings (run `edgeguard release init` first)',
  );
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const parsed = settingsSchema.safeParse(json);
  if (!parsed.success) {
    throw new EdgeguardError(
      'EG_CONFIG',
      `${path} is not a valid release settings file; restore it or run release init again.`,
    );
  }
  return parsed.data;
}

/** "365d", "12h", "90m" or a number of seconds. */
export function parseDuration(value: string): number {
  const m = /^(\d+)\s*([dhms]?)$/.exec(value.trim());
  if (!m || Number(m[1]) === 0) {
    throw new EdgeguardError('EG_USAGE', `"${value}" is not a duration; use e.g. 365d, 12h, 30m or seconds.`);
  }
  const unit = { d: DAY, h: 3600, m: 60, s: 1, '': 1 }[m[2] as 'd' | 'h' | 'm' | 's' | ''];
  return Number(m[1]) * unit;
}
