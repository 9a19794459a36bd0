/** What every demo step gets: a workspace, the fixtures, a way to narrate, and shared results. */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const FIXTURES_DIR = fileURLToPath(new URL('../../../fixtures/', import.meta.url));

export interface DemoState {
  contentKeyPath?: string;
  publisherKeyPath?: string;
  publisherPubPath?: string;
  packagePath?: string;
  fallbackPackagePath?: string;
  [key: string]: unknown;
}

export interface DemoContext {
  dir: string;
  fixtures: string;
  json: boolean;
  state: DemoState;
  /** Narrate: a command line the user could type, shown as `$ edgeguard ...`. */
  command(line: string): void;
  say(line: string): void;
  path(...parts: string[]): string;
}

export interface DemoStep {
  id: string;
  title: string;
  run(ctx: DemoContext): Promise<Record<string, unknown>>;
}

export function makeContext(dir: string, json: boolean): DemoContext {
  const print = (line: string) => {
    if (!json) process.stdout.write(line + '\n');
  };
  return {
    dir,
    fixtures: FIXTURES_DIR,
    json,
    state: {},
    command: (line) => print(`  $ edgeguard ${line}`),
    say: (line) => print(`  ${line}`),
    path: (...parts) => join(dir, ...parts),
  };
}
