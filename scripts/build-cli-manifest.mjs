// Writes dist/cli/commands.json, the CLI's light table of commands (src/cli/manifest.ts), from the
// compiled commands themselves. Run by `npm run build` after tsc.
import { writeFileSync } from 'node:fs';
import { URL } from 'node:url';
import process from 'node:process';

const dist = new URL('../dist/cli/', import.meta.url);
const { buildProgram } = await import(new URL('main.js', dist).href);
const { buildManifest } = await import(new URL('manifest.js', dist).href);
const { COMMAND_MODULES } = await import(new URL('commands/index.js', dist).href);
const manifest = await buildManifest(COMMAND_MODULES, buildProgram);
writeFileSync(new URL('commands.json', dist), JSON.stringify(manifest) + '\n');
process.stderr.write(`edgeguard: wrote dist/cli/commands.json (${Object.keys(manifest.commands).length} commands)\n`);
