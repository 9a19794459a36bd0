/** Public face of the crypto module: keys, the streaming AEAD, DSSE envelopes. */
export { sha256, b64url, fromB64url, fromB64, wipe } from './encoding.ts';
export {
  type ContentKey,
  CONTENT_KEY_BYTES,
  generateContentKey,
  contentKeyFromBytes,
  contentKeyId,
  keyIdBytes,
  encodeContentKeyFile,
  parseContentKeyFile,
  readContentKeyFile,
  assertPrivateFileMode,
} from './content-key.ts';
export {
  type SigningAlgorithm,
  type SigningKeyPair,
  generateSigningKey,
  publicKeyId,
  signingAlgorithmOf,
  encodePrivateKeyPem,
  encodePublicKeyPem,
  readPrivateSigningKey,
  readPublicSigningKey,
  parsePublicKeyPem,
} from './signing-key.ts';
export { type DsseEnvelope, IN_TOTO_PAYLOAD_TYPE, pae, signEnvelope, parseEnvelope, verifyEnvelope } from './dsse.ts';
export {
  SIGSTORE_BUNDLE_MEDIA_TYPE,
  bundleToEnvelope,
  envelopeToBundle,
  isSigstoreBundle,
  type SigstoreBundle,
} from './sigstore-bundle.ts';
export {
  type CipherSuite,
  CIPHER_SUITES,
  TAG_BYTES,
  NONCE_PREFIX_BYTES,
  ChunkCipher,
  deriveStreamMaterial,
  cipherSuiteFromId,
  parseCipherSuite,
} from './stream.ts';
export { writePrivateFile, replacePrivateFile, syncDirectory } from './private-file.ts';
export {
  type SealKeyPair,
  type Sealed,
  HPKE_KEM_X25519_SHA256,
  HPKE_KDF_HKDF_SHA256,
  HPKE_AEAD_AES_256_GCM,
  X25519_KEY_BYTES,
  SEAL_TAG_BYTES,
  seal,
  open as openSealed,
  generateSealKeyPair,
  deriveSealKeyPair,
  rawPublicKey,
  encodeSealPrivateKeyPem,
  encodeSealPublicKeyPem,
  parseSealPublicKeyPem,
  parseSealPrivateKeyPem,
} from './sealed-box.ts';
