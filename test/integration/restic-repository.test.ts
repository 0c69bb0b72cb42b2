// The restic repository driver against real restic and real backends on loopback: a local
// directory, sftp through the harness's sshd, rclone's REST server with a password, and an
// S3 server that checks signatures. Each backend is driven through this machine as the
// host, one also through an SSH connection to the harness's sshd. An argv watch over the
// whole file proves that no process ever showed a password, the REST URL with its
// credentials, or an S3 key.
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join, relative } from 'node:path';
import type { Readable } from 'node:stream';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  findRestic,
  IncompleteSnapshotError,
  ResticRepository,
  type ResticAccess,
  type ResticProgram,
} from '../../src/destination/restic.ts';
import type { Host } from '../../src/host/host.ts';
import { LocalHost } from '../../src/host/local.ts';
import { SshHost } from '../../src/host/ssh.ts';
import { NO_RETENTION } from '../../src/retention.ts';
import {
  startRestBackend,
  startResticBackend,
  type ResticBackend,
  type ResticBackendKind,
} from '../harness/restic-backends.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { freePort } from '../harness/server-process.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import { argvLeaks, watchArgv, type ArgvWatch } from '../support/argv-watch.ts';
import { ProcessTree, type OwnProcess } from '../support/processes.ts';

const KINDS: ResticBackendKind[] = ['local', 'sftp', 'rest', 's3'];
const local = new LocalHost();
let argvWatch: ArgvWatch;
let program: ResticProgram;
/** Every secret any test used, by name: the argv watch looks for all of them. */
const secrets: Record<string, string> = {};

beforeAll(async () => {
  argvWatch = watchArgv();
  program = await findRestic(local, []);
});
afterAll(async () => {
  await argvWatch?.stop();
});

function newPassword(label: string): string {
  // Characters a shell or a URL would treat specially, and a space.
  const password = `${randomBytes(9).toString('base64url')} p@ss:w/rd%$'"\`\\ ${label}`;
  secrets[`restic password (${label})`] = password;
  return password;
}

function remember(backend: ResticBackend): void {
  for (const [name, value] of Object.entries(backend.secrets))
    secrets[`${name} (${backend.kind})`] = value;
  if (backend.kind === 'rest') secrets['rest repository URL'] = backend.repository;
  if (backend.env.AWS_ACCESS_KEY_ID) secrets['S3 access key id'] = backend.env.AWS_ACCESS_KEY_ID;
}

function accessTo(backend: ResticBackend, password: string, cacheDir: string): ResticAccess {
  return {
    repository: backend.repository,
    password,
    env: { ...backend.env, RESTIC_CACHE_DIR: cacheDir },
    // The harness gives `-o key=value` pairs; the driver takes the values.
    options: backend.options.filter((option) => option !== '-o'),
  };
}

/** Fails with the message unless no secret of this file appears in it. */
function expectNoSecret(message: string): void {
  for (const [name, value] of Object.entries(secrets))
    expect(message.includes(value), `the message shows the ${name}: ${message}`).toBe(false);
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    expectNoSecret(String(error));
    return error as Error;
  }
  throw new Error('expected a failure');
}

/** A small tree with names a shell or restic's patterns could trip on, and varied modes. */
function makeTree(root: string): void {
  mkdirSync(join(root, 'data', 'alice', 'files', 'Ünïcødé dir'), { recursive: true });
  const files: [string, Buffer | string, number][] = [
    ['config.php', "<?php\n$CONFIG = ['instanceid' => 'oc1'];\n", 0o640],
    ['data/.ocdata', '', 0o644],
    ['data/alice/files/Zoë photo.jpg', randomBytes(120_000), 0o600],
    ['data/alice/files/it\'s a "quote" $HOME `x`.txt', 'quotes\n', 0o644],
    ['data/alice/files/star*and?[brackets]', 'glob\n', 0o755],
    ['data/alice/files/-leading-dash', 'dash\n', 0o444],
    ['data/alice/files/line\nbreak', 'newline in the name\n', 0o644],
    ['data/alice/files/Ünïcødé dir/back\\slash', 'backslash\n', 0o620],
  ];
  for (const [path, content, mode] of files) {
    writeFileSync(join(root, path), content);
    chmodSync(join(root, path), mode);
  }
  chmodSync(join(root, 'data', 'alice'), 0o750);
  symlinkSync('files/Zoë photo.jpg', join(root, 'data', 'alice', 'link to photo'));
}

/** Each entry under a directory: its type, mode and content digest (or link target). */
function treeState(root: string): Record<string, string> {
  const state: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const stat = lstatSync(path);
      const mode = (stat.mode & 0o7777).toString(8);
      const key = relative(root, path);
      if (stat.isSymbolicLink()) state[key] = `link -> ${readlinkSync(path)}`;
      else if (stat.isDirectory()) {
        state[key] = `dir ${mode}`;
        walk(path);
      } else
        state[key] =
          `file ${mode} ${stat.size} ${createHash('sha256').update(readFileSync(path)).digest('hex')}`;
    }
  };
  walk(root);
  return state;
}

function readAll(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/**
 * The round trip every backend must pass: the repository is missing until created, a tree
 * comes back byte for byte with its modes, an unchanged second backup adds next to nothing,
 * a stream comes back through dump, snapshots are found by tag, a policy forgets, check
 * reads the data, and a wrong password is named as such.
 */
async function roundTrip(
  host: Host,
  backend: ResticBackend,
  scratchDir: string,
  /** Only the tree and stream round trips and the wrong password (the SSH host's run). */
  short = false,
): Promise<void> {
  const password = newPassword(`${backend.kind} on ${host.label}`);
  const access = accessTo(backend, password, join(scratchDir, 'cache'));
  const repository = new ResticRepository(host, access, program, []);

  const missing = await failure(repository.open(false));
  expect(missing.message).toMatch(/^There is no restic repository at .* Set restic-init to true/);
  expect(await repository.open(true)).toBe('created');
  expect(await repository.open(false)).toBe('opened');

  const source = join(scratchDir, 'source');
  makeTree(source);
  const before = treeState(source);
  const first = await repository.backupPaths({
    paths: [source],
    excludes: [],
    tags: ['owncloud', 'files'],
    hostname: 'cloud-1',
    time: new Date('2026-11-01T02:00:00Z'),
  });
  expect(first).toMatchObject({ filesNew: 8, filesChanged: 0, filesUnmodified: 0 });
  expect(first.dataAdded).toBeGreaterThan(120_000);

  const target = join(scratchDir, 'restored');
  await repository.restore(first.id, target);
  expect(treeState(join(target, source))).toEqual(before);
  const only = join(scratchDir, 'restored-config');
  await repository.restore(first.id, only, { include: [join(source, 'config.php')] });
  expect(Object.keys(treeState(join(only, source)))).toEqual(['config.php']);

  const dump = Buffer.concat([
    Buffer.from('-- owncloud database dump\n'),
    randomBytes(80_000),
    Buffer.from(Array.from({ length: 2000 }, (_, i) => `INSERT INTO t VALUES (${i});\n`).join('')),
  ]);
  const stdinBackup = repository.backupStdin({
    filename: 'owncloud-db.sql',
    tags: ['owncloud', 'database'],
    hostname: 'cloud-1',
    time: new Date('2026-11-02T02:05:00Z'),
  });
  stdinBackup.stdin.write(dump.subarray(0, 1000));
  stdinBackup.stdin.end(dump.subarray(1000));
  const database = await stdinBackup.done;
  expect(database.filesNew).toBe(1);
  expect(database.totalBytesProcessed).toBe(dump.length);
  const dumped = repository.dump(database.id, '/owncloud-db.sql');
  const [bytes] = await Promise.all([readAll(dumped.stdout), dumped.done]);
  expect(sha256(bytes)).toBe(sha256(dump));

  if (!short) {
    const second = await repository.backupPaths({
      paths: [source],
      excludes: [join(source, 'data', '.ocdata')],
      tags: ['owncloud', 'files'],
      hostname: 'cloud-1',
      parent: first.id,
      time: new Date('2026-11-02T02:00:00Z'),
    });
    expect(second).toMatchObject({ filesNew: 0, filesChanged: 0, filesUnmodified: 7 });
    // The trees changed (one file fewer); no file data was added.
    expect(second.dataAdded).toBeLessThan(5_000);

    const files = await repository.snapshots({ tags: ['owncloud', 'files'], hostname: 'cloud-1' });
    expect(files.map((s) => [s.id.slice(0, 8), s.time, s.tags, s.paths])).toEqual([
      [first.id, '2026-11-01T02:00:00Z', ['owncloud', 'files'], [source]],
      [second.id, '2026-11-02T02:00:00Z', ['owncloud', 'files'], [source]],
    ]);
    expect(files[1]!.parent).toBe(files[0]!.id);
    const databases = await repository.snapshots({ tags: ['database'] });
    expect(databases.map((s) => [s.id.slice(0, 8), s.host, s.paths])).toEqual([
      [database.id, 'cloud-1', ['/owncloud-db.sql']],
    ]);
    expect(await repository.snapshots({ hostname: 'another-host' })).toEqual([]);

    // keep-last 1 over the files snapshots: the older one goes; the database snapshot has
    // tags of its own, so it is a history of its own and stays.
    const policy = { ...NO_RETENTION, last: 1 };
    const forgotten = await repository.forgetByPolicy({
      tags: ['owncloud'],
      hostname: 'cloud-1',
      policy,
      prune: true,
    });
    expect(forgotten.removed).toEqual([files[0]!.id]);
    expect(forgotten.kept.sort()).toEqual([files[1]!.id, databases[0]!.id].sort());
    expect(
      await repository.forgetByPolicy({
        tags: ['owncloud'],
        hostname: 'cloud-1',
        policy: NO_RETENTION,
        prune: false,
      }),
    ).toEqual({ kept: expect.arrayContaining(forgotten.kept), removed: [] });

    await repository.check({});
    await repository.check({ readDataSubsetPercent: 100 });
    // What was pruned is gone, what was kept still restores.
    const again = join(scratchDir, 'restored-again');
    await repository.restore(second.id, again);
    const expected = { ...before };
    delete expected['data/.ocdata'];
    expect(treeState(join(again, source))).toEqual(expected);
  }

  const wrong = new ResticRepository(
    host,
    { ...access, password: newPassword(`wrong for ${backend.kind}`) },
    program,
    [],
  );
  const refused = await failure(wrong.open(false));
  expect(refused.message).toMatch(/the restic password is wrong .*Check restic-password\./);
  const refusedList = await failure(wrong.snapshots());
  expect(refusedList.message).toMatch(/^Listing the snapshots .* the restic password is wrong/);
}

describe('a restic repository on each backend, restic run on this machine', () => {
  it.concurrent.for(KINDS)(
    '%s: missing until created, tree and stream round trips, tags, forget by policy, check, wrong password',
    async (kind) => {
      const scratch = makeScratchDir(`restic-repository-${kind}`);
      const backend = await startResticBackend(kind);
      remember(backend);
      try {
        await roundTrip(local, backend, scratch.path);
      } finally {
        await backend.stop();
        scratch.remove();
      }
    },
  );
});

describe('a restic repository through an SSH connection to the host', () => {
  let sshd: SshServer;
  beforeAll(async () => {
    sshd = await startSshd();
  });
  afterAll(async () => {
    await sshd?.stop();
  });
  /** An SSH session to the harness's sshd, as the tool opens one to the ownCloud host. */
  const connectToSshd = () =>
    SshHost.connect(
      {
        kind: 'ssh',
        host: sshd.host,
        port: sshd.port,
        user: sshd.user,
        privateKey: sshd.privateKey,
        knownHosts: [sshd.knownHostsLine],
      },
      { runtimeDir: makeScratchDir('restic-ssh-runtime').path },
    );

  it.concurrent(
    'rest: tree and stream round trips and a wrong password, with restic run on the SSH host',
    async () => {
      const scratch = makeScratchDir('restic-repository-ssh');
      const backend = await startRestBackend();
      remember(backend);
      const host = await connectToSshd();
      try {
        const remote = await findRestic(host, []);
        expect(remote.version).toBe('0.14.0');
        await roundTrip(host, backend, scratch.path, true);
      } finally {
        await host.close();
        await backend.stop();
        scratch.remove();
      }
    },
  );
  it.concurrent(
    'a client that goes away stops restic on the host; no environment there shows the password',
    async () => {
      // A REST server that takes connections and never answers: restic waits on it.
      const sockets: Socket[] = [];
      const stalled = createServer((socket) => sockets.push(socket));
      await new Promise<void>((resolve) => stalled.listen(0, '127.0.0.1', resolve));
      const { port } = stalled.address() as AddressInfo;
      const host = await connectToSshd();
      const scratch = makeScratchDir('restic-repository-stalled');
      try {
        const password = newPassword('stalled');
        const keyValue = `${randomBytes(12).toString('hex')} key value`;
        secrets['stalled backend variable'] = keyValue;
        const repositoryUrl = `rest:http://user:${encodeURIComponent(`stall ${password}`)}@127.0.0.1:${port}/`;
        secrets['stalled repository URL'] = repositoryUrl;
        const repository = new ResticRepository(
          host,
          {
            repository: repositoryUrl,
            password,
            env: { RESTIC_CACHE_DIR: join(scratch.path, 'cache'), B2_ACCOUNT_KEY: keyValue },
            options: [],
          },
          program,
          [],
        );
        const abort = new AbortController();
        const opening = repository.open(false, { signal: abort.signal }).catch((e: unknown) => e);
        const tree = new ProcessTree();
        const isRestic = (p: OwnProcess) => p.argv[0] === program.path && p.argv.includes('config');
        const isWrapper = (p: OwnProcess) => p.argv[0] === 'sh' && p.argv[3] === 'owncloud-backup';
        let restic: OwnProcess | undefined;
        for (let i = 0; !(restic && sockets.length > 0); i++) {
          if (i > 200) throw new Error('restic did not reach the stalled server in 10 s');
          await new Promise((resolve) => setTimeout(resolve, 50));
          restic = tree.list().find(isRestic);
        }
        // restic has what it needs in its environment (the repository; the password only as
        // the name of its fd), the wrapper has none of it.
        const environ = ProcessTree.environ(restic!.pid);
        expect(environ).toContain('RESTIC_PASSWORD_FILE=/dev/fd/3');
        expect(environ).toContain(`B2_ACCOUNT_KEY=${keyValue}`);
        expect(environ.some((v) => v.includes(password))).toBe(false);
        const wrapper = tree.list().find(isWrapper);
        expect(wrapper).toBeDefined();
        const wrapperEnviron = ProcessTree.environ(wrapper!.pid).join('\n');
        for (const secret of [password, keyValue, repositoryUrl])
          expect(wrapperEnviron.includes(secret)).toBe(false);

        abort.abort();
        await opening;
        for (let i = 0; tree.list().some((p) => isRestic(p) || isWrapper(p)); i++) {
          if (i > 200) throw new Error('restic still runs on the host 10 s after the client left');
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      } finally {
        await host.close();
        for (const socket of sockets) socket.destroy();
        stalled.close();
        scratch.remove();
      }
    },
  );
});

describe('what restic 0.14 says, in words an administrator can act on', () => {
  it.concurrent(
    'a repository locked by a running backup, an empty stream, unreadable files',
    async () => {
      const scratch = makeScratchDir('restic-repository-failures');
      const backend = await startResticBackend('local');
      const sleeper = execa('sleep', ['60']);
      try {
        const access = accessTo(backend, newPassword('failures'), join(scratch.path, 'cache'));
        const repository = new ResticRepository(local, access, program, []);
        expect(await repository.open(true)).toBe('created');
        const source = join(scratch.path, 'source');
        makeTree(source);
        const snapshot = await repository.backupPaths({
          paths: [source],
          excludes: [],
          tags: ['files'],
          hostname: 'cloud-1',
        });

        // A backup of a stream that is still being written holds a lock: forget and prune
        // need an exclusive one.
        const holding = repository.backupStdin({
          filename: 'held.sql',
          tags: ['database'],
          hostname: 'cloud-1',
        });
        holding.stdin.write('first part\n');
        const locks = join(backend.storageDir, 'locks');
        for (let i = 0; readdirSync(locks).length === 0; i++) {
          if (i > 200) throw new Error('restic took no lock in 10 s');
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        const locked = await failure(repository.forget([snapshot.id], { prune: true }));
        expect(locked.message).toMatch(
          /another restic run holds a lock on the repository \(PID \d+ on \S+, since .+\)\. Wait for it to finish; if no run is active, the lock is stale: remove it with restic unlock\./,
        );
        holding.stdin.end('second part\n');
        expect((await holding.done).totalBytesProcessed).toBe(23);
        // The lock went with the backup.
        await repository.forget([snapshot.id]);
        expect((await repository.snapshots()).map((s) => s.paths)).toEqual([['/held.sql']]);

        const empty = repository.backupStdin({
          filename: 'empty.sql',
          tags: ['database'],
          hostname: 'cloud-1',
        });
        empty.stdin.end();
        const nothing = await failure(empty.done);
        expect(nothing.message).toMatch(
          /^Backing up empty\.sql .* failed: there was no data \(restic 0\.14 refuses to store an empty snapshot from stdin\)\.$/,
        );

        // Even root cannot read another process's memory at offset 0: restic stores the
        // snapshot without it and exits 3.
        const unreadable = `/proc/${sleeper.pid}/mem`;
        const incomplete = await failure(
          repository.backupPaths({
            paths: [source, unreadable],
            excludes: [],
            tags: ['files'],
            hostname: 'cloud-1',
          }),
        );
        expect(incomplete).toBeInstanceOf(IncompleteSnapshotError);
        const { summary, resticLines } = incomplete as IncompleteSnapshotError;
        expect(resticLines).toEqual([`${unreadable}: read failed during archival`]);
        expect(incomplete.message).toMatch(
          new RegExp(
            `^restic stored snapshot ${summary.id} in .*, but some source files could not be read, so it lacks them \\(restic exit 3\\): ${unreadable}: read failed`,
          ),
        );
        const stored = await repository.snapshots({ tags: ['files'] });
        expect(stored.map((s) => s.id.slice(0, 8))).toEqual([summary.id]);
      } finally {
        sleeper.kill();
        await sleeper.catch(() => {});
        await backend.stop();
        scratch.remove();
      }
    },
  );

  it.concurrent(
    'unreachable servers, an unknown host name, refused credentials, no restic at all',
    async () => {
      const scratch = makeScratchDir('restic-repository-unreachable');
      const rest = await startRestBackend();
      const s3 = await startResticBackend('s3');
      remember(rest);
      remember(s3);
      try {
        const cache = join(scratch.path, 'cache');
        const password = newPassword('unreachable');
        const open = (access: ResticAccess) =>
          failure(new ResticRepository(local, access, program, []).open(false));
        const port = await freePort();

        const refused = await open({
          ...accessTo(rest, password, cache),
          repository: rest.repository.replace(/@127\.0\.0\.1:\d+/, `@127.0.0.1:${port}`),
        });
        expect(refused.message).toMatch(
          /^Opening the restic repository \(rest:http:\/\/restic-user:\*\*\*@127\.0\.0\.1:\d+\/ on .*\) failed: the repository's server could not be reached \(restic: .*connect: connection refused.*\)\. Check that it runs/,
        );
        const unknown = await open({
          ...accessTo(rest, password, cache),
          repository: 'rest:http://no-such-host.invalid:8000/',
        });
        expect(unknown.message).toMatch(/the repository's server name could not be resolved/);
        const sftp = await open({
          repository: `sftp:nobody@127.0.0.1:${scratch.path}/repository`,
          password,
          env: { RESTIC_CACHE_DIR: cache },
          options: [
            `sftp.command='ssh' '-p' '${port}' '-o' 'BatchMode=yes' '127.0.0.1' '-s' 'sftp'`,
          ],
        });
        expect(sftp.message).toMatch(
          /restic could not start an SFTP session to the repository's server \(restic: .*unable to start the sftp session, error: (EOF|read \|0: file already closed)/,
        );

        const wrongRest = await open({
          ...accessTo(rest, password, cache),
          repository: rest.repository.replace(/:[^:@/]+@/, ':wrong@'),
        });
        expect(wrongRest.message).toMatch(
          /the REST server refused the credentials \(HTTP 401\)\. Check the user and password in restic-repository\./,
        );
        const s3Access = accessTo(s3, password, cache);
        const wrongS3 = await open({
          ...s3Access,
          env: { ...s3Access.env, AWS_SECRET_ACCESS_KEY: 'wrong-secret-key' },
        });
        expect(wrongS3.message).toMatch(/the S3 server refused the credentials .*signature/);
        const unknownKey = await open({
          ...s3Access,
          env: { ...s3Access.env, AWS_ACCESS_KEY_ID: 'AKNOSUCHKEY' },
        });
        expect(unknownKey.message).toMatch(/the S3 server refused the credentials .*Access Key Id/);
        const untrusted = await open({
          ...s3Access,
          env: { ...s3Access.env, SSL_CERT_FILE: '/dev/null' },
        });
        expect(untrusted.message).toMatch(/TLS certificate is not trusted/);

        // A PATH in which there is a shell but no restic.
        const bin = join(scratch.path, 'bin');
        mkdirSync(bin);
        symlinkSync('/bin/sh', join(bin, 'sh'));
        const missing = await failure(findRestic(local, ['env', `PATH=${bin}`]));
        expect(missing.message).toBe(
          `restic is not installed on ${local.label}: install it (Debian/Ubuntu: apt-get install restic).`,
        );
      } finally {
        await rest.stop();
        await s3.stop();
        scratch.remove();
      }
    },
  );
});

describe('secrets', () => {
  it('no process of this file showed a password, the REST URL with its credentials, or a key', async () => {
    const seen = argvWatch.seen();
    expect(argvLeaks(seen, secrets)).toEqual([]);
    // The watch did see restic at work, under the wrapper.
    expect(seen.some((p) => p.argv.includes(program.path) && p.argv.includes('backup'))).toBe(true);
    expect(Object.keys(secrets).length).toBeGreaterThan(8);
  });
});
