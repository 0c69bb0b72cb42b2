// Encryption of a backup at rest with age (age-encryption.org/v1): every archive and the
// dump are encrypted to the user's recipients while they are written, by the age tool on
// the runner, so the files are standard age files that `age -d -i KEY FILE` opens by hand.
// Recipients are public keys (`age1…`, or SSH ed25519/RSA public keys, which age accepts);
// the identity that decrypts is a secret: it reaches age as a file (0600, in a private
// directory), never through argv or the environment.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { runProcess, stderrTail } from '../host/process.ts';

/** The suffix an encrypted file's name gets: `owncloud-files_DATE.tar.zst.age`. */
export const AGE_SUFFIX = '.age';

/** What the manifest records of a recipient: its kind and a fingerprint, no secret. */
export interface RecipientRecord {
  type: 'X25519' | 'ssh-ed25519' | 'ssh-rsa';
  /**
   * X25519: the recipient itself (`age1…`, what `age-keygen -y KEY` prints); SSH keys:
   * `SHA256:…`, what `ssh-keygen -l -f KEY.pub` prints.
   */
  fingerprint: string;
}

export interface Recipient extends RecipientRecord {
  /** The line age reads from its recipients file. */
  line: string;
}

// Bech32: `age1` then 58 characters of its alphabet (32 bytes of key and a checksum).
const X25519 = /^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$/;
const SSH = /^(ssh-ed25519|ssh-rsa) ([A-Za-z0-9+/]+={0,3})(?: .*)?$/;

/**
 * The recipients in the `encrypt-to` input: one per line (or per repeated option); empty
 * lines and `#` comments are ignored, as in age's recipients files. Pure; each problem is an
 * InputError naming the input and the line.
 */
export function parseRecipients(text: string, label: string): Recipient[] {
  const recipients: Recipient[] = [];
  const lines = text.split(/\r?\n/);
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const at = lines.length > 1 ? ` (line ${index + 1})` : '';
    if (X25519.test(line)) {
      recipients.push({ type: 'X25519', fingerprint: line, line });
      continue;
    }
    if (/^AGE-SECRET-KEY-/i.test(line))
      throw new InputError(
        `Invalid ${label}${at}: that is an age secret key (an identity). it takes the public key, the 'age1…' line that age-keygen -y prints; keep the secret key where the backups are restored.`,
      );
    const ssh = SSH.exec(line);
    const blob = ssh ? Buffer.from(ssh[2]!, 'base64') : undefined;
    if (ssh && blob && sshKeyType(blob) === ssh[1]) {
      recipients.push({
        type: ssh[1] as 'ssh-ed25519' | 'ssh-rsa',
        fingerprint: `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`,
        // Without the comment: age needs only the key.
        line: `${ssh[1]} ${ssh[2]}`,
      });
      continue;
    }
    throw new InputError(
      `Invalid ${label}${at}: '${line.length > 80 ? `${line.slice(0, 77)}...` : line}' is not an age recipient. Expected an age public key ('age1' and 58 more characters, from age-keygen) or an SSH public key ('ssh-ed25519 AAAA…' or 'ssh-rsa AAAA…'), one per line.`,
    );
  }
  if (recipients.length === 0)
    throw new InputError(
      `Invalid ${label}: no recipient in it. Expected one or more age public keys ('age1…') or SSH public keys, one per line.`,
    );
  return recipients;
}

/** The key type an SSH public key blob names in its first field (e.g. 'ssh-ed25519'). */
function sshKeyType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const length = blob.readUInt32BE(0);
  if (length > 64 || blob.length < 4 + length) return undefined;
  return blob.subarray(4, 4 + length).toString('latin1');
}

/** What the manifest records: recipients without their lines. */
export function recipientRecords(recipients: readonly Recipient[]): RecipientRecord[] {
  return recipients.map(({ type, fingerprint }) => ({ type, fingerprint }));
}

/** A recipient in words, for logs: `age1abc…xyz` or `ssh-ed25519 SHA256:…`. */
export function describeRecipient(record: RecipientRecord): string {
  return record.type === 'X25519'
    ? `${record.fingerprint.slice(0, 12)}…${record.fingerprint.slice(-6)}`
    : `${record.type} ${record.fingerprint}`;
}

/**
 * A private directory on the runner holding age's files for this run: the recipients file
 * an encrypting age reads, and the identity a decrypting age reads. Removed by `dispose`.
 */
export class AgeFiles {
  private readonly dir: string;

  /**
   * `parent`: where to make the directory; the action gives the directory its post step
   * removes whatever happens to the main step (so a killed run leaves no key behind).
   */
  constructor(parent: string = tmpdir()) {
    this.dir = mkdtempSync(join(parent, 'owncloud-backup-age-'));
  }

  /** Writes the recipients file (public keys) and returns its path. */
  recipientsFile(recipients: readonly Recipient[]): string {
    const path = join(this.dir, 'recipients');
    writeFileSync(path, recipients.map((r) => `${r.line}\n`).join(''), { mode: 0o600 });
    return path;
  }

  /** Writes the identity (a secret) where only this user can read it; returns its path. */
  identityFile(identity: string): string {
    const path = join(this.dir, 'identity');
    writeFileSync(path, identity.endsWith('\n') ? identity : `${identity}\n`, { mode: 0o600 });
    return path;
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** age encrypting stdin to stdout for the recipients in this file. */
export function encryptCommand(recipientsFile: string): string[] {
  return ['age', '--encrypt', '--recipients-file', recipientsFile];
}

/** age decrypting `path` (or stdin) to stdout with the identity in this file. */
export function decryptCommand(identityFile: string, path?: string): string[] {
  return ['age', '--decrypt', '--identity', identityFile, ...(path ? ['--', path] : [])];
}

/** age's complaint in words of this tool: which file, and what to do about it. */
export function explainAgeFailure(stderr: string, exitCode: number): string {
  const said =
    stderrTail(stderr)
      .split('\n')
      .filter((line) => !line.includes('report unexpected or unhelpful errors'))
      .map((line) => line.replace(/^age: error: /, ''))
      .join(' ')
      .trim() || `age exit ${exitCode}`;
  if (/no identity matched any of the recipients/.test(said))
    return 'the identity given is not one of the recipients it was encrypted to (wrong key)';
  if (/failed to read header|unexpected EOF|premature|truncated/i.test(said))
    return `the encrypted data is cut short (${said})`;
  // age authenticates every 64 KiB chunk: a flipped bit and a cut both end up here.
  if (/failed to decrypt and authenticate|authentication failed|invalid/i.test(said))
    return `the encrypted data is damaged or cut short (${said})`;
  if (/failed to read identity|no identities found|failed to open file.*identity/i.test(said))
    return `the identity could not be used: ${said}`;
  return said;
}

/**
 * Checks, by encrypting nothing, that age runs here and accepts every recipient (a typo in
 * a key's checksum is caught before the host is touched).
 */
export async function checkRecipients(recipientsFile: string, label: string): Promise<void> {
  await needAge(label);
  const result = await runProcess(encryptCommand(recipientsFile), { input: '' });
  if (result.exitCode === 0) return;
  throw new InputError(
    `Invalid ${label}: age refuses the recipients: ${explainAgeFailure(result.stderr, result.exitCode)}.`,
  );
}

/** Fails with what to install when the age tool is not on this machine. */
export async function needAge(label: string): Promise<void> {
  if ((await runProcess(['sh', '-c', 'command -v age']).then((r) => r.exitCode)) !== 0)
    throw new InputError(
      `The ${label} needs the age tool on this machine, and it is not installed: install it (Debian/Ubuntu: sudo apt-get install -y age).`,
    );
}

/**
 * Why the identity is not one age can read (`AGE-SECRET-KEY-1…` lines, or an SSH private
 * key), or undefined. Pure: what it decrypts is judged when it is used.
 */
export function identityProblem(identity: string): string | undefined {
  const lines = identity
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length === 0) return 'it is empty';
  if (/^-----BEGIN [A-Z ]*PRIVATE KEY-----$/.test(lines[0]!)) return undefined;
  if (lines.every((l) => /^AGE-SECRET-KEY-1[0-9A-Z]{58}$/.test(l))) return undefined;
  if (lines.some((l) => X25519.test(l)))
    return "it holds a public key ('age1…'); decrypting needs the secret key ('AGE-SECRET-KEY-1…')";
  return "it is neither an age secret key ('AGE-SECRET-KEY-1…', one per line) nor an SSH private key";
}

/**
 * Runs `work` with the identity (when one is given) in a private file that age reads, and
 * removes the file afterwards, whatever happens.
 */
export async function withIdentity<T>(
  identity: string | undefined,
  work: (identityFile: string | undefined) => Promise<T>,
  parent?: string,
): Promise<T> {
  if (identity === undefined) return work(undefined);
  await needAge('identity');
  const files = new AgeFiles(parent);
  try {
    return await work(files.identityFile(identity));
  } finally {
    files.dispose();
  }
}
