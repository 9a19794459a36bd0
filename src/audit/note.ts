/**
 * C2SP signed-note (https://c2sp.org/signed-note), the envelope of log checkpoints, with Ed25519
 * keys (signature type 0x01), byte-compatible with golang.org/x/mod/sumdb/note.
 *
 *   note      = text "\n" 1*signature-line            (text: UTF-8, ends in "\n", no other C0 controls)
 *   signature = "— " name " " base64(key ID[4] || sig) "\n"   ("—" is U+2014)
 *   key ID    = SHA-256(name || 0x0A || 0x01 || public key)[0:4]
 *   verifier key string = name "+" hex(key ID) "+" base64(0x01 || public key)
 *   signer key string   = "PRIVATE+KEY+" name "+" hex(key ID) "+" base64(0x01 || seed)
 *
 * Opening a note: signatures by unknown keys are ignored, a signature by a known key that does
 * not verify rejects the note, and a note no known key verifies is rejected. Notes carry at most
 * MAX_SIGNATURES lines (the spec asks verifiers to accept at least 16; Go caps at 100).
 */
import { createPrivateKey, createPublicKey, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';
import { EdgeguardError } from '../errors/index.ts';
import { sha256, fromB64 } from '../crypto/encoding.ts';

export const MAX_SIGNATURES = 100;
/** Notes larger than this are refused before parsing (checkpoints are a few hundred bytes). */
export const MAX_NOTE_BYTES = 1 << 20;
const ALG_ED25519 = 0x01;
const DASH = '\u2014 ';

export interface NoteSigner {
  name: string;
  keyId: Buffer;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export interface NoteVerifier {
  name: string;
  keyId: Buffer;
  publicKey: KeyObject;
}

export interface NoteSignature {
  name: string;
  keyId: Buffer;
  signature: Buffer;
}

export interface OpenedNote {
  text: string;
  /** Signatures that a known key verified. */
  verified: NoteSignature[];
  /** Signatures by keys this verifier set does not know (e.g. witnesses' cosignatures). */
  unverified: NoteSignature[];
}

/** Names: non-empty, no Unicode white space, no "+". */
export function isValidKeyName(name: string): boolean {
  return name.length > 0 && !/[\s+]/u.test(name) && isWellFormedText(name) && !/\p{Cc}/u.test(name);
}

function isWellFormedText(s: string): boolean {
  return Buffer.from(s, 'utf8').toString('utf8') === s;
}

export function rawEd25519PublicKey(key: KeyObject): Buffer {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new EdgeguardError(
      'EG_KEY_FORMAT',
      `a signed-note key must be Ed25519, not ${key.asymmetricKeyType ?? 'unknown'}.`,
    );
  }
  const der = (key.type === 'private' ? createPublicKey(key) : key).export({ type: 'spki', format: 'der' });
  return Buffer.from(der.subarray(der.length - 32));
}

export function ed25519KeyId(name: string, publicKey: KeyObject): Buffer {
  return sha256(Buffer.from(name, 'utf8'), Buffer.from([0x0a, ALG_ED25519]), rawEd25519PublicKey(publicKey)).subarray(
    0,
    4,
  );
}

const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function ed25519PublicFromRaw(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

export function noteSigner(name: string, privateKey: KeyObject): NoteSigner {
  if (!isValidKeyName(name))
    throw new EdgeguardError(
      'EG_KEY_FORMAT',
      `"${name}" is not a valid signed-note key name (non-empty, no spaces, no "+").`,
    );
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') {
    throw new EdgeguardError('EG_KEY_FORMAT', 'a checkpoint signing key must be an Ed25519 private key.');
  }
  const publicKey = createPublicKey(privateKey);
  return { name, keyId: ed25519KeyId(name, publicKey), privateKey, publicKey };
}

export function noteVerifier(name: string, publicKey: KeyObject): NoteVerifier {
  if (!isValidKeyName(name))
    throw new EdgeguardError(
      'EG_KEY_FORMAT',
      `"${name}" is not a valid signed-note key name (non-empty, no spaces, no "+").`,
    );
  return { name, keyId: ed25519KeyId(name, publicKey), publicKey };
}

/** The verifier key string, `name+hex(keyID)+base64(0x01 || pub)`, that clients pin (log.pub). */
export function formatVerifierKey(v: NoteVerifier | NoteSigner): string {
  return `${v.name}+${v.keyId.toString('hex')}+${Buffer.concat([Buffer.from([ALG_ED25519]), rawEd25519PublicKey(v.publicKey)]).toString('base64')}`;
}

/** The Go-compatible signer key string. It is a secret: callers keep it off disk or in 0600 files. */
export function formatSignerKey(s: NoteSigner): string {
  const pkcs8 = s.privateKey.export({ type: 'pkcs8', format: 'der' });
  const seed = pkcs8.subarray(pkcs8.length - 32);
  const text = `PRIVATE+KEY+${s.name}+${s.keyId.toString('hex')}+${Buffer.concat([Buffer.from([ALG_ED25519]), seed]).toString('base64')}`;
  seed.fill(0);
  return text;
}

function splitKeyString(text: string, what: string): { name: string; hash: string; key: Buffer } {
  const bad = (why: string) =>
    new EdgeguardError('EG_KEY_FORMAT', `${what} is malformed (${why}); expected name+keyid+base64key.`);
  const first = text.indexOf('+');
  if (first < 0) throw bad('no "+"');
  const second = text.indexOf('+', first + 1);
  if (second < 0) throw bad('only one "+"');
  const name = text.slice(0, first);
  const hash = text.slice(first + 1, second);
  const keyText = text.slice(second + 1);
  if (!isValidKeyName(name)) throw bad('invalid key name');
  if (!/^[0-9a-f]{8}$/.test(hash)) throw bad('key id is not 8 lowercase hex digits');
  const key = fromB64(keyText);
  if (key === undefined || key.toString('base64') !== keyText) throw bad('key is not canonical base64');
  if (key.length !== 33) throw bad(`key is ${key.length} bytes, expected 33`);
  if (key[0] !== ALG_ED25519)
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      `${what} uses signature type 0x${(key[0] ?? 0).toString(16).padStart(2, '0')}; only Ed25519 (0x01) is supported.`,
    );
  return { name, hash, key: key.subarray(1) };
}

/** Parse `name+hex(keyID)+base64(0x01 || pub)`; the key id must match the key. */
export function parseVerifierKey(text: string): NoteVerifier {
  const trimmed = text.trim();
  const { name, hash, key } = splitKeyString(trimmed, 'the log verifier key');
  let publicKey: KeyObject;
  try {
    publicKey = ed25519PublicFromRaw(key);
  } catch (e) {
    throw new EdgeguardError('EG_KEY_FORMAT', 'the log verifier key does not hold a valid Ed25519 public key.', {
      cause: e,
    });
  }
  const v = noteVerifier(name, publicKey);
  if (v.keyId.toString('hex') !== hash) {
    throw new EdgeguardError(
      'EG_KEY_FORMAT',
      `the log verifier key's id ${hash} does not match its key (expected ${v.keyId.toString('hex')}).`,
    );
  }
  return v;
}

/** Parse `PRIVATE+KEY+name+hex(keyID)+base64(0x01 || seed)`. */
export function parseSignerKey(text: string): NoteSigner {
  const trimmed = text.trim();
  if (!trimmed.startsWith('PRIVATE+KEY+'))
    throw new EdgeguardError('EG_KEY_FORMAT', 'the log signing key does not start with PRIVATE+KEY+.');
  const { name, hash, key } = splitKeyString(trimmed.slice('PRIVATE+KEY+'.length), 'the log signing key');
  const der = Buffer.concat([PKCS8_ED25519_PREFIX, key]);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    der.fill(0);
    key.fill(0);
  }
  const s = noteSigner(name, privateKey);
  if (s.keyId.toString('hex') !== hash)
    throw new EdgeguardError('EG_KEY_FORMAT', `the log signing key's id ${hash} does not match its key.`);
  return s;
}

/** Note text rules: UTF-8, ends with "\n", no C0 control characters other than "\n". */
export function checkNoteText(text: string): void {
  if (!text.endsWith('\n')) throw new EdgeguardError('EG_FORMAT', 'note text must end with a newline.');
  if (!isWellFormedText(text)) throw new EdgeguardError('EG_FORMAT', 'note text is not valid UTF-8.');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0009\u000b-\u001f]/.test(text))
    throw new EdgeguardError('EG_FORMAT', 'note text contains a control character other than newline.');
}

/** Sign `text` with each signer; `existing` signatures (e.g. cosignatures) are kept after ours. */
export function signNote(
  text: string,
  signers: readonly NoteSigner[],
  existing: readonly NoteSignature[] = [],
): string {
  checkNoteText(text);
  if (signers.length === 0) throw new EdgeguardError('EG_USAGE', 'a note needs at least one signer.');
  const msg = Buffer.from(text, 'utf8');
  const lines = signers.map((s) =>
    signatureLine({ name: s.name, keyId: s.keyId, signature: edSign(null, msg, s.privateKey) }),
  );
  for (const e of existing) lines.push(signatureLine(e));
  if (lines.length > MAX_SIGNATURES)
    throw new EdgeguardError('EG_USAGE', `a note carries at most ${MAX_SIGNATURES} signatures.`);
  return `${text}\n${lines.join('')}`;
}

function signatureLine(s: NoteSignature): string {
  return `${DASH}${s.name} ${Buffer.concat([s.keyId, s.signature]).toString('base64')}\n`;
}

/** Split a note into text and signature lines without verifying anything. */
export function parseNote(note: string | Uint8Array): { text: string; signatures: NoteSignature[] } {
  const bytes = typeof note === 'string' ? Buffer.from(note, 'utf8') : Buffer.from(note);
  if (bytes.length > MAX_NOTE_BYTES)
    throw new EdgeguardError(
      'EG_FORMAT',
      `the signed note is ${bytes.length} bytes, more than the ${MAX_NOTE_BYTES} accepted.`,
    );
  const msg = bytes.toString('utf8');
  if (!Buffer.from(msg, 'utf8').equals(bytes))
    throw new EdgeguardError('EG_FORMAT', 'the signed note is not valid UTF-8.');
  const split = msg.lastIndexOf('\n\n');
  if (split < 0) throw new EdgeguardError('EG_FORMAT', 'the signed note has no blank line before its signatures.');
  const text = msg.slice(0, split + 1);
  checkNoteText(text);
  const sigText = msg.slice(split + 2);
  if (sigText.length === 0 || !sigText.endsWith('\n'))
    throw new EdgeguardError('EG_FORMAT', 'the signed note has no signature lines, or they do not end with a newline.');
  const rawLines = sigText.slice(0, -1).split('\n');
  if (rawLines.length > MAX_SIGNATURES)
    throw new EdgeguardError(
      'EG_FORMAT',
      `the signed note has ${rawLines.length} signatures; at most ${MAX_SIGNATURES} are accepted.`,
    );
  const signatures = rawLines.map((line, i) => {
    const bad = (why: string) =>
      new EdgeguardError('EG_FORMAT', `signature line ${i + 1} of the note is malformed (${why}).`);
    if (!line.startsWith(DASH)) throw bad('it must start with an em dash and a space');
    const rest = line.slice(DASH.length);
    const sp = rest.indexOf(' ');
    if (sp < 0) throw bad('no space between name and signature');
    const name = rest.slice(0, sp);
    const b64 = rest.slice(sp + 1);
    if (!isValidKeyName(name)) throw bad('invalid key name');
    const raw = fromB64(b64);
    if (raw === undefined || raw.toString('base64') !== b64) throw bad('signature is not canonical base64');
    if (raw.length < 5) throw bad('signature shorter than a key id');
    return { name, keyId: Buffer.from(raw.subarray(0, 4)), signature: Buffer.from(raw.subarray(4)) };
  });
  return { text, signatures };
}

/**
 * Open a signed note: verify it under the known keys. Throws EG_SIGNATURE_INVALID if a known key's
 * signature fails, EG_SIGNATURE_MISMATCH if no known key signed it.
 */
export function openNote(note: string | Uint8Array, verifiers: readonly NoteVerifier[]): OpenedNote {
  const { text, signatures } = parseNote(note);
  const msg = Buffer.from(text, 'utf8');
  const verified: NoteSignature[] = [];
  const unverified: NoteSignature[] = [];
  const seen = new Set<string>();
  for (const sig of signatures) {
    const tag = `${sig.name}+${sig.keyId.toString('hex')}`;
    const v = verifiers.find((k) => k.name === sig.name && k.keyId.equals(sig.keyId));
    if (v === undefined) {
      unverified.push(sig);
      continue;
    }
    if (seen.has(tag)) continue;
    seen.add(tag);
    if (sig.signature.length !== 64 || !edVerify(null, msg, v.publicKey, sig.signature)) {
      throw new EdgeguardError(
        'EG_SIGNATURE_INVALID',
        `the note's signature by ${sig.name} (key ${sig.keyId.toString('hex')}) does not verify; the note was altered or forged.`,
      );
    }
    verified.push(sig);
  }
  if (verified.length === 0) {
    const names = [...new Set(signatures.map((s) => s.name))].join(', ');
    throw new EdgeguardError(
      'EG_SIGNATURE_MISMATCH',
      `no trusted key signed this note (signed by: ${names}); check that --log-key is the log's verifier key.`,
    );
  }
  return { text, verified, unverified };
}
