/**
 * C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint): the signed statement of a log's size
 * and root, carried as the text of a signed note.
 *
 *   <origin>\n            non-empty, unique name of the log (also the note key name here)
 *   <tree size>\n         ASCII decimal, no leading zeros
 *   <root hash>\n         standard base64 of the 32-byte RFC 9162 root
 *   [<extension line>\n]* optional, non-empty lines
 */
import { EdgeguardError } from '../errors/index.ts';
import { fromB64 } from '../crypto/encoding.ts';
import { HASH_BYTES } from './merkle.ts';
import { checkNoteText, openNote, signNote, type NoteSigner, type NoteVerifier, type OpenedNote } from './note.ts';

export interface Checkpoint {
  origin: string;
  size: number;
  rootHash: Buffer;
  extensions: string[];
}

export function formatCheckpoint(cp: Checkpoint): string {
  if (cp.origin.length === 0 || cp.origin.includes('\n'))
    throw new EdgeguardError('EG_USAGE', 'a checkpoint origin must be one non-empty line.');
  if (!Number.isSafeInteger(cp.size) || cp.size < 0)
    throw new EdgeguardError('EG_USAGE', `checkpoint size ${cp.size} is not a non-negative integer.`);
  if (cp.rootHash.length !== HASH_BYTES)
    throw new EdgeguardError('EG_USAGE', 'a checkpoint root hash must be 32 bytes.');
  for (const e of cp.extensions) {
    if (e.length === 0 || e.includes('\n'))
      throw new EdgeguardError('EG_USAGE', 'checkpoint extension lines must be non-empty single lines.');
  }
  const text = [cp.origin, String(cp.size), cp.rootHash.toString('base64'), ...cp.extensions].join('\n') + '\n';
  checkNoteText(text);
  return text;
}

/** Parse a checkpoint body (the note text), strictly. */
export function parseCheckpoint(text: string): Checkpoint {
  const bad = (why: string) => new EdgeguardError('EG_FORMAT', `the checkpoint is malformed: ${why}.`);
  checkNoteText(text);
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) throw bad(`it has ${lines.length} lines, at least 3 are required`);
  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]];
  if (origin.length === 0) throw bad('the origin line is empty');
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText)) throw bad('the tree size is not a decimal number without leading zeros');
  const size = Number(sizeText);
  if (!Number.isSafeInteger(size)) throw bad(`the tree size ${sizeText} is larger than 2^53-1`);
  const rootHash = fromB64(rootText);
  if (rootHash === undefined || rootHash.toString('base64') !== rootText)
    throw bad('the root hash is not canonical base64');
  if (rootHash.length !== HASH_BYTES) throw bad(`the root hash is ${rootHash.length} bytes, not 32`);
  if (extensions.some((e) => e.length === 0)) throw bad('an extension line is empty');
  return { origin, size, rootHash, extensions };
}

export function signCheckpoint(cp: Checkpoint, signer: NoteSigner): string {
  return signNote(formatCheckpoint(cp), [signer]);
}

export interface OpenedCheckpoint {
  checkpoint: Checkpoint;
  note: OpenedNote;
  /** The whole signed note as received, for storing as "last trusted". */
  signedNote: string;
}

/**
 * Verify a signed checkpoint with the log's key and parse it. `origin` defaults to the key's
 * name: a checkpoint of another log signed by the same key is still refused.
 */
export function openCheckpoint(
  signedNote: string | Uint8Array,
  logKey: NoteVerifier,
  origin: string = logKey.name,
): OpenedCheckpoint {
  const note = openNote(signedNote, [logKey]);
  const checkpoint = parseCheckpoint(note.text);
  if (checkpoint.origin !== origin) {
    throw new EdgeguardError(
      'EG_SIGNATURE_MISMATCH',
      `the checkpoint is for log "${checkpoint.origin}", not the expected "${origin}".`,
    );
  }
  return {
    checkpoint,
    note,
    signedNote: typeof signedNote === 'string' ? signedNote : Buffer.from(signedNote).toString('utf8'),
  };
}
