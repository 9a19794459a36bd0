/**
 * The command-line options that name a content key (--key, or --wrapped-key with --device), as
 * the key store's source; resolving it is the key store's job (keystore/content-key.ts).
 */
import { EdgeguardError } from '../errors/index.ts';
import type { ContentKeySource } from '../keystore/index.ts';

export interface ContentKeySourceOptions {
  key?: string;
  wrappedKey?: string;
  device?: string;
}

export function contentKeySource(o: ContentKeySourceOptions): ContentKeySource {
  if (o.key && o.wrappedKey)
    throw new EdgeguardError('EG_USAGE', 'pass either --key or --wrapped-key with --device, not both.');
  if (o.key) return { file: o.key };
  if (o.wrappedKey) {
    if (!o.device)
      throw new EdgeguardError(
        'EG_USAGE',
        '--wrapped-key needs --device DIR (the directory made by `edgeguard device init`).',
      );
    return { wrapped: o.wrappedKey, device: o.device };
  }
  throw new EdgeguardError(
    'EG_USAGE',
    'pass the content key: --key model.key, or --wrapped-key model.key.wrapped --device DIR.',
  );
}
