/**
 * Where a command gets the model content key: a key file (operator side, development), or a
 * wrapped key that only this device's key store can unwrap (--wrapped-key with --device).
 */
import { readContentKeyFile, type ContentKey } from '../crypto/index.ts';
import { readFile } from 'node:fs/promises';
import { EdgeguardError, fsError } from '../errors/index.ts';
import { openDeviceKeyStore } from '../keystore/index.ts';

export interface ContentKeySourceOptions {
  key?: string;
  wrappedKey?: string;
  device?: string;
}

export interface ResolvedContentKey {
  key: ContentKey;
  /** How the key was obtained, for posture reporting. */
  provider: 'key-file' | 'tpm' | 'software';
  hardwareBound: boolean;
  label: string;
}

export async function resolveContentKey(o: ContentKeySourceOptions): Promise<ResolvedContentKey> {
  if (o.key && o.wrappedKey)
    throw new EdgeguardError('EG_USAGE', 'pass either --key or --wrapped-key with --device, not both.');
  if (o.key) {
    return {
      key: await readContentKeyFile(o.key),
      provider: 'key-file',
      hardwareBound: false,
      label: 'content key file: not hardware-bound',
    };
  }
  if (o.wrappedKey) {
    if (!o.device)
      throw new EdgeguardError(
        'EG_USAGE',
        '--wrapped-key needs --device DIR (the directory made by `edgeguard device init`).',
      );
    return unwrapWithDevice(o.wrappedKey, o.device);
  }
  throw new EdgeguardError(
    'EG_USAGE',
    'pass the content key: --key model.key, or --wrapped-key model.key.wrapped --device DIR.',
  );
}

async function unwrapWithDevice(wrappedPath: string, deviceDir: string): Promise<ResolvedContentKey> {
  const store = await openDeviceKeyStore(deviceDir);
  let text: string;
  try {
    text = await readFile(wrappedPath, 'utf8');
  } catch (e) {
    throw fsError(e, wrappedPath, 'read the wrapped key');
  }
  const key = await store.unwrapContentKey(text);
  return { key, provider: store.provider, hardwareBound: store.posture.hardwareBound, label: store.posture.label };
}
