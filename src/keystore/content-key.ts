/**
 * Where a model's content key comes from, for every entry point (agent, CLI, demo): a key file
 * (operator side, development; not hardware-bound), or a wrapped key that only this device's key
 * store can unwrap. The caller wipes `key.bytes` once its sessions exist.
 */
import { readContentKeyFile, type ContentKey } from '../crypto/index.ts';
import { FILE_CAPS, readBoundedText } from '../errors/index.ts';
import { openDeviceKeyStore } from './device.ts';
import type { KeyStore } from './types.ts';

/** `store`: the device's key store already opened (the agent keeps it to wipe on a tamper response). */
export type ContentKeySource = { file: string } | { wrapped: string; device: string; store?: KeyStore | undefined };

/** How the key was obtained, for health output, audit events and posture reporting. */
export interface ContentKeyPosture {
  provider: 'key-file' | 'tpm' | 'software';
  hardwareBound: boolean;
  label: string;
}

const KEY_FILE_POSTURE: ContentKeyPosture = {
  provider: 'key-file',
  hardwareBound: false,
  label: 'content key file: not hardware-bound',
};

export async function resolveContentKey(
  source: ContentKeySource,
): Promise<{ key: ContentKey; posture: ContentKeyPosture }> {
  if ('file' in source) return { key: await readContentKeyFile(source.file), posture: KEY_FILE_POSTURE };
  const store = source.store ?? (await openDeviceKeyStore(source.device));
  const text = await readBoundedText(source.wrapped, FILE_CAPS.key, 'read the wrapped key');
  const key = await store.unwrapContentKey(text);
  return {
    key,
    posture: { provider: store.provider, hardwareBound: store.posture.hardwareBound, label: store.posture.label },
  };
}
