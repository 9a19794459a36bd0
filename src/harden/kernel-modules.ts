/**
 * Whether kernel modules are available, read from what the kernel and the module tree publish:
 * /proc/modules and /sys/module (loaded), and modules.builtin and modules.dep under
 * /lib/modules/RELEASE (built in, loadable on demand). Module names compare with '-' as '_',
 * as modprobe does.
 */
import { access, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';

export type ModuleAvailability = 'loaded' | 'builtin' | 'loadable' | 'missing';

function moduleName(pathOrName: string): string {
  return basename(pathOrName)
    .replace(/\.ko(\.\w+)?$/, '')
    .replace(/-/g, '_');
}

async function readLines(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter((line) => line.length > 0);
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

async function moduleTree(root: string): Promise<{ builtin: Set<string>; loadable: Set<string> }> {
  const release = (await readFile(join(root, 'proc', 'sys', 'kernel', 'osrelease'), 'utf8').catch(() => '')).trim();
  if (!release) return { builtin: new Set(), loadable: new Set() };
  const dir = join(root, 'lib', 'modules', release);
  const builtin = (await readLines(join(dir, 'modules.builtin'))).map(moduleName);
  const loadable = (await readLines(join(dir, 'modules.dep'))).map((line) => moduleName(line.split(':')[0]!));
  return { builtin: new Set(builtin), loadable: new Set(loadable) };
}

/** `root` is the filesystem root to inspect: `/`, or a mounted device image. */
export async function kernelModuleAvailability(
  names: string[],
  root = '/',
): Promise<Record<string, ModuleAvailability>> {
  const loaded = new Set((await readLines(join(root, 'proc', 'modules'))).map((line) => line.split(' ')[0]!));
  const tree = await moduleTree(root);
  const result: Record<string, ModuleAvailability> = {};
  for (const name of names.map(moduleName)) {
    if (loaded.has(name) || (await exists(join(root, 'sys', 'module', name)))) result[name] = 'loaded';
    else if (tree.builtin.has(name)) result[name] = 'builtin';
    else if (tree.loadable.has(name)) result[name] = 'loadable';
    else result[name] = 'missing';
  }
  return result;
}
