/**
 * "A protected model behind the guard", assembled once for every entry point (the agent, the
 * CLI, the demo): the packages are verified and decrypted into memory only (loadProtectedModel),
 * the content key is wiped as soon as the sessions exist, and the guard is built over the
 * primary, ensemble and fallback members with the calibrated profile.
 */
import type { KeyObject } from 'node:crypto';
import { wipe } from '../crypto/index.ts';
import { EdgeguardError, FILE_CAPS, readBounded } from '../errors/index.ts';
import { loadProtectedModel, type LoadedModel } from '../inference/index.ts';
import { resolveContentKey, type ContentKeyPosture, type ContentKeySource } from '../keystore/index.ts';
import type { ImagePreprocessing } from '../model/index.ts';
import {
  Guard,
  guardInputShape,
  loadedModelClassifier,
  parseProfile,
  type Classifier,
  type GuardConfig,
  type GuardProfile,
  type PlanarShape,
} from '../guard/index.ts';

export interface ModelSetSpec {
  /** Protected packages (.egm). The fallback answers flagged inputs; the guard defaults it to the ensemble. */
  models: { primary: string; ensemble?: string | undefined; fallback?: string | undefined };
  /** Trusted publishers: a package signed by no one of them is refused. */
  publicKeys: KeyObject[];
  contentKey: ContentKeySource;
}

/** The loaded members (one session per distinct package) and the input they share. */
export interface ModelSet {
  primary: LoadedModel;
  ensemble?: LoadedModel | undefined;
  fallback?: LoadedModel | undefined;
  pre: ImagePreprocessing;
  shape: PlanarShape;
  labels: string[] | undefined;
  key: ContentKeyPosture;
  release(): Promise<void>;
}

export interface GuardSpec {
  config: GuardConfig;
  profile?: GuardProfile | undefined;
}

export interface GuardedModel extends ModelSet {
  guard: Guard;
}

export interface GuardedModelSpec extends ModelSetSpec {
  guard: GuardConfig;
  /** Path of the calibrated profile.json. */
  profile?: string | undefined;
}

/** What checkInput needs: the guard and the input its models take. */
export type GuardTarget = Pick<GuardedModel, 'guard' | 'pre' | 'shape'>;

/** Load the packages of `spec` into memory (each distinct path once); the content key is wiped before returning. */
export async function openModelSet(spec: ModelSetSpec): Promise<ModelSet> {
  const { key, posture } = await resolveContentKey(spec.contentKey);
  const loaded = new Map<string, LoadedModel>();
  const releaseAll = async () => {
    for (const m of loaded.values()) await m.release().catch(() => undefined);
    loaded.clear();
  };
  try {
    const load = async (path: string | undefined) => {
      if (!path) return undefined;
      let m = loaded.get(path);
      if (!m) {
        m = await loadProtectedModel(path, { publicKeys: spec.publicKeys, contentKey: key });
        loaded.set(path, m);
      }
      return m;
    };
    const primary = (await load(spec.models.primary))!;
    const ensemble = await load(spec.models.ensemble);
    const fallback = await load(spec.models.fallback);
    const pre = primary.metadata.preprocessing;
    const shape = guardInputShape(pre, `model ${primary.metadata.name}`);
    for (const m of [ensemble, fallback]) if (m) requireSameInput(primary, m);
    const labels = primary.metadata.outputs[0]?.labels;
    return { primary, ensemble, fallback, pre: pre!, shape, labels, key: posture, release: releaseAll };
  } catch (e) {
    await releaseAll();
    throw e;
  } finally {
    wipe(key.bytes);
  }
}

function requireSameInput(primary: LoadedModel, m: LoadedModel): void {
  const theirs = JSON.stringify(m.metadata.inputs[0]?.shape);
  const ours = JSON.stringify(primary.metadata.inputs[0]?.shape);
  if (theirs !== ours)
    throw new EdgeguardError(
      'EG_CONFIG',
      `model ${m.metadata.name} takes input ${theirs}, unlike the primary's ${ours}; the ensemble and fallback must take the same input.`,
    );
}

/** The guard over classifiers that take `shape`: the one place its members are wired. */
export function guardOver(
  members: { primary: Classifier; ensemble?: Classifier | undefined; fallback?: Classifier | undefined },
  shape: PlanarShape,
  labels: string[] | undefined,
  spec: GuardSpec,
): Guard {
  return new Guard({
    config: spec.config,
    ...(spec.profile ? { profile: spec.profile } : {}),
    primary: members.primary,
    ...(members.ensemble ? { ensemble: members.ensemble } : {}),
    ...(members.fallback ? { fallback: members.fallback } : {}),
    shape,
    ...(labels ? { labels } : {}),
  });
}

/** A guard over a loaded model set. */
export function guardModelSet(set: ModelSet, spec: GuardSpec): Guard {
  const classify = (m: LoadedModel | undefined) => (m ? loadedModelClassifier(m) : undefined);
  return guardOver(
    { primary: loadedModelClassifier(set.primary), ensemble: classify(set.ensemble), fallback: classify(set.fallback) },
    set.shape,
    set.labels,
    spec,
  );
}

/** Read and check a calibrated profile.json. */
export async function loadGuardProfile(path: string): Promise<GuardProfile> {
  const bytes = await readBounded(path, FILE_CAPS.config, 'read the guard profile');
  return parseProfile(bytes, path);
}

/** Models from their packages, the profile from its file, and the guard over them. */
export async function openGuardedModel(spec: GuardedModelSpec): Promise<GuardedModel> {
  const profile = spec.profile ? await loadGuardProfile(spec.profile) : undefined;
  const set = await openModelSet(spec);
  try {
    return { ...set, guard: guardModelSet(set, { config: spec.guard, profile }) };
  } catch (e) {
    await set.release();
    throw e;
  }
}
