/** Public face of the inference module: protected models in ONNX Runtime, images and tensors to model inputs in memory. */
export { ort } from './ort.ts';
export {
  type Tensor,
  type DecodedImage,
  MAX_INPUT_PIXELS,
  decodeImage,
  pixelsToTensor,
  imageToTensor,
} from './preprocess.ts';
export {
  type Classification,
  type LoadOptions,
  LoadedModel,
  loadProtectedModel,
  createSessionFromMemory,
  describeOnnx,
  toProbabilities,
} from './session.ts';
export {
  type ModelInput,
  type SuppliedTensor,
  type TypedValues,
  MAX_TENSOR_RANK,
  MAX_TENSOR_VALUES,
  checkModelInputs,
  countValues,
  defaultInputRange,
  typedValues,
  wipeModelInputs,
  wipeValues,
} from './tensor.ts';
export { type NpyArray, MAX_NPY_FILE_BYTES, encodeNpy, parseNpy } from './npy.ts';
export { TENSOR_BODY_JSON_SCHEMA, parseTensorJson } from './tensor-json.ts';
export {
  EXECUTION_PROVIDERS,
  type ExecutionProvider,
  availableExecutionProviders,
  resolveExecutionProviders,
} from './providers.ts';
