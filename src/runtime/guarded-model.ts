/**
 * "A protected model behind the guard", assembled once for every entry point (the agent, the
 * CLI, the demo): the packages are verified and decrypted into memory only (loadProtectedModel),
 * the content key is wiped as soon as the sessions exist, and the guard is built over the
 * primary, ensemble and fallback members with the calibrated profile.
 */
import type { KeyObject } from 'node:crypto';
import { wipe } from '../crypto/index.ts';
import { EdgeguardError, FILE_CAPS, readBounded } from '../errors/index.ts';
import {
  loadProtectedModel,
  resolveExecutionProviders,
  type ExecutionProvider,
  type LoadedModel,
} from '../inference/index.ts';
import { resolveContentKey, type ContentKeyPosture, type ContentKeySource } from '../keystore/index.ts';
import type { ImagePreprocessing, TensorDescription } from '../model/index.ts';
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
  /** ONNX Runtime execution providers by preference (agent.yaml runtime.executionProviders); default cpu. */
  executionProviders?: readonly string[] | undefined;
}

/** The loaded members (one session per distinct package) and the input they share. */
export interface ModelSet {
  primary: LoadedModel;
  ensemble?: LoadedModel | undefined;
  fallback?: LoadedModel | undefined;
  /** The image preprocessing and planar shape; both absent for a model that does not take images. */
  pre: ImagePreprocessing | undefined;
  shape: PlanarShape | undefined;
  /** The primary's declared inputs (name, dtype, shape, range), what tensors are checked against. */
  inputs: readonly TensorDescription[];
  labels: string[] | undefined;
  key: ContentKeyPosture;
  executionProviders: readonly ExecutionProvider[];
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

/** What checkInput needs: the guard and the input its models take (`inputs` for tensors). */
export type GuardTarget = Pick<GuardedModel, 'guard' | 'pre' | 'shape'> & Partial<Pick<GuardedModel, 'inputs'>>;

/** Load the packages of `spec` into memory (each distinct path once); the content key is wiped before returning. */
export async function openModelSet(spec: ModelSetSpec): Promise<ModelSet> {
  const executionProviders = resolveExecutionProviders(spec.executionProviders);
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
        m = await loadProtectedModel(path, { publicKeys: spec.publicKeys, contentKey: key, executionProviders });
        loaded.set(path, m);
      }
      return m;
    };
    const primary = (await load(spec.models.primary))!;
    const ensemble = await load(spec.models.ensemble);
    const fallback = await load(spec.models.fallback);
    const pre = primary.metadata.preprocessing;
    const shape = pre ? guardInputShape(pre, `model ${primary.metadata.name}`) : undefined;
    for (const m of [ensemble, fallback]) if (m) requireSameInput(primary, m);
    const labels = primary.metadata.outputs[0]?.labels;
    const inputs = primary.metadata.inputs;
    return {
      ...{ primary, ensemble, fallback, pre, shape, inputs, labels },
      ...{ key: posture, executionProviders, release: releaseAll },
    };
  } catch (e) {
    await releaseAll();
    throw e;
  } finally {
    wipe(key.bytes);
  }
}

function requireSameInput(primary: LoadedModel, m: LoadedModel): void {
  const describe = (x: LoadedModel) => JSON.stringify(x.metadata.inputs.map((i) => [i.name, i.dtype, i.shape]));
  const theirs = describe(m);
  const ours = describe(primary);
  if (theirs !== ours)
    throw new EdgeguardError(
      'EG_CONFIG',
      `model ${m.metadata.name} takes input ${theirs}, unlike the primary's ${ours}; the ensemble and fallback must take the same input.`,
    );
}

/** The guard over classifiers that take `shape`: the one place its members are wired. */
export function guardOver(
  members: { primary: Classifier; ensemble?: Classifier | undefined; fallback?: Classifier | undefined },
  shape: PlanarShape | undefined,
  labels: string[] | undefined,
  spec: GuardSpec,
): Guard {
  return new Guard({
    config: spec.config,
    ...(spec.profile ? { profile: spec.profile } : {}),
    primary: members.primary,
    ...(members.ensemble ? { ensemble: members.ensemble } : {}),
    ...(members.fallback ? { fallback: members.fallback } : {}),
    ...(shape ? { shape } : {}),
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
