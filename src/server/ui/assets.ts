/**
 * The dashboard's static files, all served by the control plane itself (no CDN): its own client
 * script and style sheet from the package's ui/ directory, and Chart.js from its npm package. Read
 * once at start; each is served under a fixed name with an ETag, Chart.js under its version (so
 * it can be cached for good).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EdgeguardError } from '../../errors/index.ts';

/** The package's ui/ directory (the same from src/server/ui and dist/server/ui). */
export const UI_ASSETS_DIR = fileURLToPath(new URL('../../../ui/', import.meta.url));

export interface Asset {
  body: Buffer;
  type: string;
  etag: string;
  cacheControl: string;
}

function asset(path: string, type: string, cacheControl: string): Asset {
  let body: Buffer;
  try {
    body = readFileSync(path);
  } catch (e) {
    throw new EdgeguardError('EG_CONFIG', `the dashboard file ${path} is missing; reinstall edgeguard.`, { cause: e });
  }
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
  return { body, type, etag, cacheControl };
}

/** Name under /ui/assets/ -> file. */
export function loadAssets(): { assets: Map<string, Asset>; chartPath: string } {
  const require = createRequire(import.meta.url);
  const chartDir = dirname(require.resolve('chart.js'));
  const chartVersion = (JSON.parse(readFileSync(join(chartDir, '..', 'package.json'), 'utf8')) as { version: string })
    .version;
  const chartName = `chart-${chartVersion}.umd.min.js`;
  const assets = new Map<string, Asset>([
    ['app.js', asset(join(UI_ASSETS_DIR, 'app.js'), 'text/javascript; charset=utf-8', 'no-cache')],
    ['verify.js', asset(join(UI_ASSETS_DIR, 'verify.js'), 'text/javascript; charset=utf-8', 'no-cache')],
    ['app.css', asset(join(UI_ASSETS_DIR, 'app.css'), 'text/css; charset=utf-8', 'no-cache')],
    ['favicon.svg', asset(join(UI_ASSETS_DIR, 'favicon.svg'), 'image/svg+xml', 'public, max-age=86400')],
    [
      chartName,
      asset(
        join(chartDir, 'chart.umd.min.js'),
        'text/javascript; charset=utf-8',
        'public, max-age=31536000, immutable',
      ),
    ],
  ]);
  return { assets, chartPath: `/ui/assets/${chartName}` };
}
