// Real restic repository backends on loopback, each in a scratch dir of its own: a local
// directory, `sftp:` through the harness's sshd, `rest:` through `rclone serve restic`, and
// `s3:` through s3rver (see s3-server-main.ts). Every one that has credentials checks them.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { execa } from 'execa';
import { makeScratchDir } from './scratch.ts';
import { freePort, startServerProcess } from './server-process.ts';
import { startSshd, type SshServer } from './sshd.ts';
import { requireTool } from './tools.ts';

export type ResticBackendKind = 'local' | 'sftp' | 'rest' | 's3';

export interface ResticBackend {
  readonly kind: ResticBackendKind;
  /**
   * The repository as restic names it. Give it to restic through RESTIC_REPOSITORY (or
   * --repository-file), not `-r`: the rest repository carries the server's password.
   */
  readonly repository: string;
  /** Environment restic needs for this backend (S3 keys, the CA of the S3 server's TLS). */
  readonly env: Readonly<Record<string, string>>;
  /** restic options for this backend, to put before the command (`-o sftp.command=…`). */
  readonly options: readonly string[];
  /** The backend's own credentials, by name: no argv, log or message may show them. */
  readonly secrets: Readonly<Record<string, string>>;
  /** Where the repository's files are on disk (the server's storage). */
  readonly storageDir: string;
  /** The server process, when the backend has one of its own (rest, s3). */
  readonly pid?: number;
  /** The scratch dir holding everything of this backend. */
  readonly dir: string;
  /** Stops the server (and the sshd, when it was started for this backend), removes the dir. */
  stop(): Promise<void>;
}

/** True once something answers HTTP(S) at the URL, whatever the status. */
function httpAnswers(url: string, ca?: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const request = url.startsWith('https:') ? httpsRequest(url, { ca }) : httpRequest(url);
    request.once('response', (response) => {
      response.resume();
      resolve(true);
    });
    request.once('error', () => resolve(false));
    request.end();
  });
}

/** A password with the characters that need encoding in a URL's user info. */
function awkwardPassword(): string {
  return `${randomBytes(9).toString('base64url')} p@ss:w/rd%`;
}

export async function startLocalBackend(): Promise<ResticBackend> {
  const scratch = makeScratchDir('restic-local');
  const storageDir = join(scratch.path, 'repository');
  return {
    kind: 'local',
    repository: storageDir,
    env: {},
    options: [],
    secrets: {},
    storageDir,
    dir: scratch.path,
    async stop() {
      scratch.remove();
    },
  };
}

/**
 * One argument of restic's `sftp.command`, which restic splits itself (quotes group, no
 * escapes inside them): single quotes hold anything but a single quote.
 */
function sftpCommandWord(word: string): string {
  if (word === '' || word.includes("'"))
    throw new Error(`cannot pass ${JSON.stringify(word)} in restic's sftp.command`);
  return `'${word}'`;
}

/**
 * `sftp:` through the harness's sshd (the given one, or one started for this backend), as
 * its user, with its key and its known_hosts: restic 0.14 takes the whole ssh command
 * through `-o sftp.command=…` (the repository's user and host are then not used, only its
 * path).
 */
export async function startSftpBackend(options: { sshd?: SshServer } = {}): Promise<ResticBackend> {
  const sshd = options.sshd ?? (await startSshd());
  const scratch = makeScratchDir('restic-sftp');
  const storageDir = join(scratch.path, 'repository');
  const command = [requireTool('ssh'), ...sshd.clientArgs(), '-s', 'sftp'];
  return {
    kind: 'sftp',
    repository: `sftp:${sshd.user}@${sshd.host}:${storageDir}`,
    env: {},
    options: ['-o', `sftp.command=${command.map(sftpCommandWord).join(' ')}`],
    secrets: {},
    storageDir,
    dir: scratch.path,
    async stop() {
      scratch.remove();
      if (!options.sshd) await sshd.stop();
    },
  };
}

/**
 * `rest:` through `rclone serve restic`, with HTTP basic auth from an htpasswd file (so the
 * password is in no argv of the server either).
 */
export async function startRestBackend(): Promise<ResticBackend> {
  const rclone = requireTool('rclone');
  const scratch = makeScratchDir('restic-rest');
  const storageDir = join(scratch.path, 'repository');
  mkdirSync(storageDir);
  const user = 'restic-user';
  const password = awkwardPassword();
  const htpasswd = join(scratch.path, 'htpasswd');
  const sha1 = createHash('sha1').update(password, 'utf8').digest('base64');
  writeFileSync(htpasswd, `${user}:{SHA}${sha1}\n`, { mode: 0o600 });
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const server = await startServerProcess({
    name: 'rclone serve restic',
    // --config '': no rclone.conf is read or looked for.
    argv: [
      ...[rclone, 'serve', 'restic', '--config', '', '--addr', address],
      ...['--htpasswd', htpasswd, storageDir],
    ],

    logPath: join(scratch.path, 'rclone.log'),
    stopSignal: 'SIGTERM',
    ready: () => httpAnswers(`http://${address}/`),
  }).catch((error: unknown) => {
    scratch.remove();
    throw error;
  });
  return {
    kind: 'rest',
    repository: `rest:http://${user}:${encodeURIComponent(password)}@${address}/`,
    env: {},
    options: [],
    secrets: { 'rest password': password },
    storageDir,
    pid: server.pid,
    dir: scratch.path,
    async stop() {
      await server.stop();
      scratch.remove();
    },
  };
}

/**
 * `s3:` through s3rver on HTTPS with a certificate made for this server (restic trusts it
 * through SSL_CERT_FILE), one bucket, and an access key of its own.
 */
export async function startS3Backend(): Promise<ResticBackend> {
  const openssl = requireTool('openssl');
  const scratch = makeScratchDir('restic-s3');
  const dir = scratch.path;
  try {
    const tlsKey = join(dir, 'tls-key.pem');
    const tlsCert = join(dir, 'tls-cert.pem');
    await execa(openssl, [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'],
      ...['-keyout', tlsKey, '-out', tlsCert, '-days', '2', '-subj', '/CN=127.0.0.1'],
      ...['-addext', 'subjectAltName=IP:127.0.0.1'],
    ]);
    const accessKeyId = `AK${randomBytes(8).toString('hex').toUpperCase()}`;
    const secretAccessKey = randomBytes(24).toString('base64');
    const credentials = join(dir, 'credentials');
    writeFileSync(credentials, `${accessKeyId}:${secretAccessKey}\n`, { mode: 0o600 });
    const storage = join(dir, 'storage');
    mkdirSync(storage);
    const bucket = 'owncloud-backups';
    const port = await freePort();
    const ca = readFileSync(tlsCert);
    const server = await startServerProcess({
      name: 's3rver',
      argv: [
        process.execPath,
        join(import.meta.dirname, 's3-server-main.ts'),
        ...['--directory', storage, '--port', String(port), '--bucket', bucket],
        ...['--tls-key', tlsKey, '--tls-cert', tlsCert, '--credentials-file', credentials],
      ],
      logPath: join(dir, 's3rver.log'),
      stopSignal: 'SIGTERM',
      ready: () => httpAnswers(`https://127.0.0.1:${port}/`, ca),
    });
    return {
      kind: 's3',
      repository: `s3:https://127.0.0.1:${port}/${bucket}/restic`,
      env: {
        AWS_ACCESS_KEY_ID: accessKeyId,
        AWS_SECRET_ACCESS_KEY: secretAccessKey,
        SSL_CERT_FILE: tlsCert,
      },
      options: [],
      secrets: { 'S3 secret access key': secretAccessKey },
      storageDir: join(storage, bucket, 'restic'),
      pid: server.pid,
      dir,
      async stop() {
        await server.stop();
        scratch.remove();
      },
    };
  } catch (error) {
    scratch.remove();
    throw error;
  }
}

export function startResticBackend(kind: ResticBackendKind): Promise<ResticBackend> {
  switch (kind) {
    case 'local':
      return startLocalBackend();
    case 'sftp':
      return startSftpBackend();
    case 'rest':
      return startRestBackend();
    case 's3':
      return startS3Backend();
  }
}
