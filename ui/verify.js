/*
 * What the dashboard checks in the browser, as pure functions over WebCrypto (also run by the
 * Node tests against the server's own Merkle code): C2SP signed-note verifier keys and Ed25519
 * note signatures, C2SP tlog-checkpoint bodies, and RFC 9162 inclusion proofs.
 */
/* global crypto, TextEncoder, atob */
const enc = new TextEncoder();

export function b64(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function equal(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', concat(...parts)));
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** C2SP signed-note verifier key: name "+" hex(key ID) "+" base64(0x01 || Ed25519 public key). */
export async function parseVerifierKey(text) {
  // The name has no "+"; the base64 key may (so split at the first two only).
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/]+={0,2})$/.exec(text.trim());
  if (!m) throw new Error('the log key is not name+keyid+key');
  const [, name, keyIdHex, keyB64] = m;
  const key = b64(keyB64);
  if (key.length !== 33 || key[0] !== 0x01) throw new Error('the log key is not an Ed25519 key');
  const pub = key.slice(1);
  const keyId = (await sha256(enc.encode(name), new Uint8Array([0x0a, 0x01]), pub)).slice(0, 4);
  if (hex(keyId) !== keyIdHex) throw new Error('the log key id does not match its key');
  return { name, keyId, pub };
}

/** Open a signed note with one known key: the text of the note, or an error. */
export async function openNote(note, verifier) {
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new Error('the checkpoint has no signature lines');
  const text = note.slice(0, split + 1);
  const lines = note
    .slice(split + 2)
    .split('\n')
    .filter((l) => l !== '');
  const key = await crypto.subtle.importKey('raw', verifier.pub, { name: 'Ed25519' }, false, ['verify']);
  for (const line of lines) {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
    if (!m || m[1] !== verifier.name) continue;
    const sig = b64(m[2]);
    if (sig.length !== 68 || !equal(sig.slice(0, 4), verifier.keyId)) continue;
    const ok = await crypto.subtle.verify({ name: 'Ed25519' }, key, sig.slice(4), enc.encode(text));
    if (!ok) throw new Error('the checkpoint signature by the log key does not verify');
    return text;
  }
  throw new Error('the checkpoint carries no signature by the pinned log key');
}

/** C2SP tlog-checkpoint body: origin, tree size, base64 root hash. */
export function parseCheckpoint(text) {
  const lines = text.split('\n');
  const size = Number(lines[1]);
  if (!/^(0|[1-9][0-9]*)$/.test(lines[1] || '') || !Number.isSafeInteger(size)) throw new Error('bad tree size');
  const root = b64(lines[2] || '');
  if (root.length !== 32) throw new Error('bad root hash');
  return { origin: lines[0], size, root };
}

/** RFC 9162 section 2.1.3.2: the root an inclusion proof leads to from a leaf. */
export async function rootFromInclusionProof(index, size, leafHash, proof) {
  if (index >= size) throw new Error('the entry is outside the tree');
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of proof) {
    if (sn === 0) throw new Error('the proof is too long');
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(new Uint8Array([0x01]), p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = await sha256(new Uint8Array([0x01]), r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error('the proof is too short');
  return r;
}

/**
 * RFC 9162 section 2.1.4.2: whether `proof` shows the tree of size `size1` (root `root1`) to be
 * a prefix of the tree of size `size2` (root `root2`): the log only grew, nothing was rewritten.
 */
export async function verifyConsistency(size1, root1, size2, root2, proof) {
  if (size1 > size2) throw new Error(`the log shrank from ${size1} to ${size2} entries`);
  if (size1 === size2) {
    if (proof.length !== 0 || !equal(root1, root2)) throw new Error('two different roots for the same size');
    return;
  }
  if (size1 === 0) return;
  if (proof.length === 0) throw new Error('the consistency proof is empty');
  const path = (size1 & (size1 - 1)) === 0 ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0];
  let sr = path[0];
  const node = new Uint8Array([0x01]);
  for (const c of path.slice(1)) {
    if (sn === 0) throw new Error('the consistency proof is too long');
    if (fn % 2 === 1 || fn === sn) {
      fr = await sha256(node, c, fr);
      sr = await sha256(node, c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = await sha256(node, sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error('the consistency proof is too short');
  if (!equal(fr, root1)) throw new Error('the proof does not lead to the earlier root');
  if (!equal(sr, root2)) throw new Error('the proof does not lead to the current root');
}
