// Server-side encryption as ownCloud 10's default module (OC_DEFAULT_MODULE) leaves it on disk
// and in the database, for the sample instance. What is faithful, and where it comes from
// (owncloud/core):
// - Key storage (lib/private/Encryption/Keys/Storage.php): system keys in
//   DATADIR/files_encryption/OC_DEFAULT_MODULE/<keyId>.publicKey|.privateKey (the master key
//   `master_<8 hex>`, the public-link key `pubShare_<8 hex>`); user keys in
//   DATADIR/USER/files_encryption/OC_DEFAULT_MODULE/USER.publicKey|.privateKey; the keys of a
//   file in DATADIR/USER/files_encryption/keys/<path below the user>/OC_DEFAULT_MODULE/:
//   `fileKey` and one `<id>.shareKey` per key it is sealed for (apps/encryption KeyManager:
//   the master key id in master-key mode, else every user with access).
// - A version uses the keys of its file (apps/encryption Crypto/Encryption::getPathToRealFile
//   maps files_versions/X.vN to files/X); a file moved to the trash bin takes its keys with it
//   (Storage/Wrapper/Encryption::rename copies them to keys/files_trashbin/files/...).
// - Contents: a header padded with '-' to 8192 bytes, then one 8192-byte block per 6072 bytes
//   of plain text (signed blocks: base64 ciphertext, '00iv00' + 16-byte IV, '00sig00' +
//   64-byte signature, 'xxx' padding; lib/private/Files/Stream/Encryption.php and
//   apps/encryption Crypto/Crypt.php), so the file on disk is bigger than its plain text.
// - File cache (lib/private/Files/Cache/Cache.php, Storage/Wrapper/Encryption.php):
//   `encrypted` holds the file's encryption version (Cache::buildParts writes
//   encryptedVersion into it; every write adds one: Crypto/Encryption::end sets version + 1);
//   `size` holds the PLAIN-TEXT size (Wrapper/Encryption::filesize puts the unencrypted size
//   into `size`, fixUnencryptedSize writes it there); `unencrypted_size` is not written by
//   ownCloud 10 at all (it is not among Cache::buildParts' fields), so it keeps its default 0,
//   except in rows left from ownCloud 8.0's old encryption app, which wrote it.
//   Directories keep encrypted = 0 and the sum of their children's `size`.
// Nothing here is real cryptography: the bytes are derived from a seed, so they are
// deterministic and comparable between an instance and its backup.
import { createHash } from 'node:crypto';

export type EncryptionMode = 'master-key' | 'per-user-key';

export const MODULE = 'OC_DEFAULT_MODULE';
export const HEADER_SIZE = 8192;
const BLOCK_SIZE = 8192;
const PLAIN_BLOCK_SIZE = 6072;

/** Deterministic bytes from a seed (SHA-256 in counter mode). */
export function seededBytes(seed: string, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let counter = 0, at = 0; at < length; counter++) {
    const block = createHash('sha256').update(`${seed}\0${counter}`).digest();
    at += block.copy(out, at, 0, Math.min(block.length, length - at));
  }
  return out;
}

/** A key id as ownCloud makes them: `master_` + 8 hex digits, etc. */
export function keyId(kind: 'master' | 'pubShare' | 'recoveryKey', seed: string): string {
  return `${kind}_${createHash('md5').update(`${kind}:${seed}`).digest('hex').slice(0, 8)}`;
}

/** ownCloud's file header: module and cipher, padded with '-' to 8192 bytes. */
export function fileHeader(): Buffer {
  const text = `HBEGIN:oc_encryption_module:${MODULE}:cipher:AES-256-CTR:signed:true:HEND`;
  return Buffer.from(text.padEnd(HEADER_SIZE, '-'), 'latin1');
}

/** The bytes on disk of a file with this plain text, as the default module writes them. */
export function encryptedContent(plain: Buffer, seed: string): Buffer {
  const parts = [fileHeader()];
  for (let at = 0, n = 0; at < plain.length; at += PLAIN_BLOCK_SIZE, n++) {
    const length = Math.min(PLAIN_BLOCK_SIZE, plain.length - at);
    const cipher = seededBytes(`${seed}:block:${n}`, length).toString('base64');
    const iv = seededBytes(`${seed}:iv:${n}`, 12).toString('base64');
    const sig = seededBytes(`${seed}:sig:${n}`, 32).toString('hex');
    parts.push(Buffer.from(`${cipher}00iv00${iv}00sig00${sig}xxx`, 'latin1'));
  }
  return Buffer.concat(parts);
}

/** The size on disk of an encrypted file of `plainSize` bytes. */
export function encryptedSize(plainSize: number): number {
  const full = Math.floor(plainSize / PLAIN_BLOCK_SIZE);
  const rest = plainSize % PLAIN_BLOCK_SIZE;
  return HEADER_SIZE + full * BLOCK_SIZE + (rest > 0 ? Math.ceil(rest / 3) * 4 + 96 : 0);
}

/** A public key file: PEM text. */
export function publicKeyFile(seed: string): string {
  const body = seededBytes(`${seed}:public`, 550).toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN PUBLIC KEY-----\n${body}\n-----END PUBLIC KEY-----\n`;
}

/** A private key file: the key header, then the key encrypted with a password. */
export function privateKeyFile(seed: string): Buffer {
  const cipher = seededBytes(`${seed}:private`, 2400).toString('base64');
  const iv = seededBytes(`${seed}:private-iv`, 12).toString('base64');
  const sig = seededBytes(`${seed}:private-sig`, 32).toString('hex');
  return Buffer.from(
    `HBEGIN:cipher:AES-256-CTR:keyFormat:hash:HEND${cipher}00iv00${iv}00sig00${sig}xxx`,
    'latin1',
  );
}

/** A file key sealed for the share keys, and a share key (an RSA-4096-sized blob). */
export function fileKey(seed: string): Buffer {
  return seededBytes(`${seed}:fileKey`, 48);
}
export function shareKey(seed: string, id: string): Buffer {
  return seededBytes(`${seed}:shareKey:${id}`, 512);
}

/** Where ownCloud keeps the keys of a file, relative to the user's home; null: it has none. */
export function fileKeyDir(path: string): string | null {
  if (path.startsWith('files/') || path.startsWith('files_trashbin/files/'))
    return `files_encryption/keys/${path}/${MODULE}`;
  return null;
}

/** Whether the default module encrypts a file at this path below the user's home. */
export function isEncryptedPath(path: string): boolean {
  return ['files/', 'files_versions/', 'files_trashbin/'].some((p) => path.startsWith(p));
}
