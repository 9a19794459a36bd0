/** Public face of the model package module (.egm): pack, inspect, verify, unpack, decrypt in memory. */
export {
  type ModelMetadata,
  type ModelMetadataInput,
  type ImagePreprocessing,
  type TensorDescription,
  type TensorDtype,
  type ValueRange,
  TENSOR_DTYPES,
  modelMetadataSchema,
  parseModelMetadata,
} from './metadata.ts';
export {
  type PackageHeader,
  type ParsedHeader,
  MAGIC,
  FORMAT_VERSION,
  FIXED_HEADER_BYTES,
  DEFAULT_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  MAX_CHUNK_SIZE,
  encodeHeader,
  parseHeader,
  chunkCount,
} from './header.ts';
export { type PackOptions, type PackResult, packModel, signaturePathFor } from './pack.ts';
export {
  PackageFile,
  readSignatureFile,
  decryptEngine,
  PARALLEL_FROM_BYTES,
  type ChunkSink,
  type DecryptOptions,
} from './package-file.ts';
export { nativeOpenerStatus, type NativeStatus } from './native-opener.ts';
export {
  type SignedShards,
  MIN_SHARD_BYTES,
  defaultShardSize,
  shardCount,
  shardName,
  shardAlgorithm,
} from './shards.ts';
export {
  type ModelStatement,
  type VerifiedSignature,
  buildStatement,
  verifyPackageSignature,
  OMS_PREDICATE_TYPE,
} from './signature.ts';
export {
  type TrustOptions,
  type InspectResult,
  type VerifyResult,
  type DecryptedModel,
  inspectPackage,
  verifyPackage,
  unpackPackage,
  decryptPackageToMemory,
} from './operations.ts';
