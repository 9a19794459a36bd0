/**
 * The trial load of an installed slot, before the switch: the content key unwrapped through the
 * device's key store (in memory), the package verified and decrypted into memory, the ONNX
 * Runtime session created, and the release's smoke test run: its input must give its label.
 */
import type { KeyObject } from 'node:crypto';
import { wipe } from '../crypto/index.ts';
import { EdgeguardError } from '../errors/index.ts';
import {
  checkModelInputs,
  defaultInputRange,
  loadProtectedModel,
  parseNpy,
  parseTensorJson,
  resolveExecutionProviders,
  wipeModelInputs,
  type LoadedModel,
  type SuppliedTensor,
} from '../inference/index.ts';
import { resolveContentKey, type ContentKeySource } from '../keystore/index.ts';

export interface SmokeTest {
  /** A PNG or JPEG image, an .npy array, or tensor JSON ({"inputs": {...}}), as `edgeguard run` takes. */
  input: Uint8Array;
  expectedLabel: string;
}

export interface TrialLoadOptions {
  packagePath: string;
  publicKeys: KeyObject[];
  contentKey: ContentKeySource;
  /** What the model must be: the release the verified metadata named. */
  expect: { name: string; version: number; headerSha256: string };
  smokeTest?: SmokeTest | undefined;
  executionProviders?: readonly string[] | undefined;
}

export interface TrialResult {
  smokeLabel?: string;
}

const failed = (message: string, cause?: unknown) =>
  new EdgeguardError('EG_INSTALL_FAILED', `trial load failed: ${message}; the device stays on its current release.`, {
    cause,
  });

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47]);
const JPEG = Buffer.from([0xff, 0xd8, 0xff]);
const NPY = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);

async function smokeLabel(model: LoadedModel, input: Uint8Array): Promise<string> {
  const bytes = Buffer.from(input);
  if (bytes.subarray(0, 4).equals(PNG) || bytes.subarray(0, 3).equals(JPEG))
    return (await model.classifyImage(bytes)).label;
  let supplied: SuppliedTensor[];
  if (bytes.subarray(0, 6).equals(NPY)) supplied = [parseNpy(bytes)];
  else {
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch (e) {
      throw failed('the smoke-test input is not an image, an .npy array or tensor JSON', e);
    }
    supplied = parseTensorJson(json, 'the smoke-test input');
  }
  const inputs = checkModelInputs(model.metadata.inputs, supplied, defaultInputRange(model.metadata.preprocessing));
  try {
    return (await model.classifyInputs(inputs)).label;
  } finally {
    wipeModelInputs(inputs);
  }
}

/** Load the package as the agent would, run the smoke test, and release the session. */
export async function trialLoad(o: TrialLoadOptions): Promise<TrialResult> {
  const { key } = await resolveContentKey(o.contentKey);
  let model: LoadedModel;
  try {
    model = await loadProtectedModel(o.packagePath, {
      publicKeys: o.publicKeys,
      contentKey: key,
      executionProviders: resolveExecutionProviders(o.executionProviders),
    });
  } catch (e) {
    throw failed(e instanceof Error ? e.message : String(e), e);
  } finally {
    wipe(key.bytes);
  }
  try {
    const m = model.metadata;
    if (
      m.name !== o.expect.name ||
      m.version !== o.expect.version ||
      model.provenance.headerSha256 !== o.expect.headerSha256
    )
      throw failed(`the slot holds ${m.name} ${m.version}, not the release ${o.expect.name} ${o.expect.version}`);
    if (!o.smokeTest) return {};
    let label: string;
    try {
      label = await smokeLabel(model, o.smokeTest.input);
    } catch (e) {
      if (e instanceof EdgeguardError && e.code === 'EG_INSTALL_FAILED') throw e;
      throw failed(`the smoke test did not run (${e instanceof Error ? e.message : String(e)})`, e);
    }
    if (label !== o.smokeTest.expectedLabel)
      throw failed(`the smoke test gave label "${label}", the release expects "${o.smokeTest.expectedLabel}"`);
    return { smokeLabel: label };
  } finally {
    await model.release();
  }
}
