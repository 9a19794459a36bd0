/**
 * DIR/ek-roots re-read when it changes, so a TPM vendor's CA added after start counts at the next
 * enrollment without a restart. The trust store object is shared by reference (ctx.ekTrust), so
 * the anchors are replaced in place. A change that cannot be loaded (a file that is not a
 * certificate, a file others can write) keeps the previous anchors and is logged as an error.
 */
import { watch, type FSWatcher } from 'node:fs';
import type { FastifyBaseLogger } from 'fastify';
import { loadEkTrustStore, type EkTrustStore } from '../attest/index.ts';
import { refuseUnsafeEkRoots } from './data-dir.ts';

/** Several events arrive for one copy or rename; one reload after they settle. */
const SETTLE_MS = 200;

export function watchEkRoots(dir: string, trust: EkTrustStore, log: FastifyBaseLogger): FSWatcher {
  let timer: NodeJS.Timeout | undefined;
  const reload = () => {
    try {
      refuseUnsafeEkRoots(dir);
      const fresh = loadEkTrustStore(dir);
      trust.anchors.splice(0, trust.anchors.length, ...fresh.anchors);
      log.info({ anchors: trust.anchors.length }, `EK roots re-read from ${dir}`);
    } catch (e) {
      log.error({ err: e }, `EK roots in ${dir} not re-read; the previous set stays in use`);
    }
  };
  const watcher = watch(dir, () => {
    clearTimeout(timer);
    timer = setTimeout(reload, SETTLE_MS);
  });
  watcher.on('close', () => clearTimeout(timer));
  return watcher;
}
