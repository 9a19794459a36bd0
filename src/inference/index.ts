/** Public face of the inference module: protected models in ONNX Runtime, images to tensors in memory. */
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
