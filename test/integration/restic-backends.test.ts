// The restic repository backends of the test harness: real restic against a local
// directory, sftp through the harness's sshd, rclone's REST server and an S3 server, each
// started on loopback by the test. The repository password only ever travels in a 0600
// file, never in an argv; the backends' own credentials are checked by their servers.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  startResticBackend,
  type ResticBackend,
  type ResticBackendKind,
} from '../harness/restic-backends.ts';
import { isProcessRunning, makeScratchDir } from '../harness/scratch.ts';
import { requireTool } from '../harness/tools.ts';
import { argvLeaks, watchArgv, type ArgvWatch } from '../support/argv-watch.ts';

const KINDS: ResticBackendKind[] = ['local', 'sftp', 'rest', 's3'];
// One watch for the whole file: the backends' tests run side by side.
let argvWatch: ArgvWatch;
const timings: Record<string, number> = {};

beforeAll(() => {
  argvWatch = watchArgv();
});
afterAll(async () => {
  await argvWatch.stop();
  console.log(`restic backends, start and round trip (ms): ${JSON.stringify(timings)}`);
});

interface ResticRun {
  exitCode: number;
  stdout: string;
  stderr: string;
}

interface RunOptions {
  input?: Buffer;
  /** Replaces the backend's repository, environment or options: a wrong credential. */
  repository?: string;
  env?: Record<string, string>;
}

/** restic on this backend, with the password in a 0600 file and nothing else inherited. */
function resticOn(backend: ResticBackend, passwordFile: string, cacheDir: string) {
  const run = async (args: string[], options: RunOptions = {}): Promise<ResticRun> => {
    const result = await execa(requireTool('restic'), [...backend.options, ...args], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: cacheDir,
        RESTIC_REPOSITORY: options.repository ?? backend.repository,
        RESTIC_PASSWORD_FILE: passwordFile,
        RESTIC_CACHE_DIR: cacheDir,
        ...(options.env ?? backend.env),
      },
      extendEnv: false,
      ...(options.input ? { input: options.input } : { stdin: 'ignore' }),
      stripFinalNewline: false,
      reject: false,
    });
    return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr };
  };
  return {
    run,
    async ok(args: string[], options: RunOptions = {}): Promise<string> {
      const result = await run(args, options);
      if (result.exitCode !== 0)
        throw new Error(`restic ${args.join(' ')} exited ${result.exitCode}:\n${result.stderr}`);
      return result.stdout;
    },
  };
}

/** Every regular file under a directory, by relative path, with its bytes. */
function readTree(root: string): Record<string, Buffer> {
  const files: Record<string, Buffer> = {};
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else files[relative(root, path)] = readFileSync(path);
    }
  };
  walk(root);
  return files;
}

/**
 * What a tree holds, by relative path: each file's size and SHA-256. Compared instead of
 * the bytes themselves, so that a difference reads as the files that differ.
 */
function treeDigest(root: string): Record<string, string> {
  return digest(readTree(root));
}

function digest(files: Record<string, Buffer>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(files).map(([path, bytes]) => [
      path,
      `${bytes.length} bytes, sha256 ${createHash('sha256').update(bytes).digest('hex')}`,
    ]),
  );
}

/** The files of one of the repository's directories as the backend stores them. */
function storedFiles(backend: ResticBackend, subdir: string): Record<string, Buffer> {
  const files = readTree(join(backend.storageDir, subdir));
  // s3rver keeps an object as NAME._S3rver_object, beside its metadata and checksum.
  if (backend.kind !== 's3') return files;
  return Object.fromEntries(
    Object.entries(files)
      .filter(([name]) => name.endsWith('._S3rver_object'))
      .map(([name, bytes]) => [name.slice(0, -'._S3rver_object'.length), bytes]),
  );
}

/** Wrong credentials for the backends that have some, and what restic then says. */
function wrongCredentials(
  backend: ResticBackend,
): { what: string; run: RunOptions; stderr: RegExp }[] {
  switch (backend.kind) {
    case 'rest':
      return [
        {
          what: 'wrong password',
          run: { repository: backend.repository.replace(/:[^:@/]+@/, ':wrong@') },
          stderr: /unexpected HTTP response \(401\): 401 Unauthorized/,
        },
        {
          what: 'no credentials',
          run: { repository: backend.repository.replace(/\/\/[^@/]+@/, '//') },
          stderr: /unexpected HTTP response \(401\): 401 Unauthorized/,
        },
      ];
    case 's3':
      return [
        {
          what: 'wrong secret key',
          run: { env: { ...backend.env, AWS_SECRET_ACCESS_KEY: 'wrong' } },
          stderr: /The request signature we calculated does not match the signature you provided/,
        },
        {
          what: 'unknown access key',
          run: { env: { ...backend.env, AWS_ACCESS_KEY_ID: 'AKWRONG' } },
          stderr: /The AWS Access Key Id you provided does not exist in our records/,
        },
        {
          what: 'no credentials',
          run: { env: { SSL_CERT_FILE: backend.env.SSL_CERT_FILE! } },
          stderr: /Stat: Access Denied/,
        },
      ];
    default:
      return [];
  }
}

interface Snapshot {
  id: string;
  short_id: string;
  paths: string[];
  tags?: string[];
  hostname: string;
}

describe('restic repository backends', () => {
  it.concurrent.for(KINDS)(
    '%s: init, backup of a directory and of a stream, restore byte for byte, forget --prune, check',
    async (kind, { expect }) => {
      const scratch = makeScratchDir(`restic-client-${kind}`);
      const password = `${randomBytes(12).toString('base64url')} restic pw`;
      const t0 = performance.now();
      const backend = await startResticBackend(kind);
      timings[`${kind} start`] = Math.round(performance.now() - t0);
      try {
        const passwordFile = join(scratch.path, 'restic-password');
        writeFileSync(passwordFile, password, { mode: 0o600 });
        expect(statSync(passwordFile).mode & 0o777).toBe(0o600);
        const restic = resticOn(backend, passwordFile, join(scratch.path, 'cache'));

        expect(await restic.ok(['init'])).toMatch(/created restic repository \w+ at /);
        for (const wrong of wrongCredentials(backend)) {
          const refused = await restic.run(['snapshots'], wrong.run);
          expect(refused.exitCode, wrong.what).toBe(1);
          expect(refused.stderr, wrong.what).toMatch(wrong.stderr);
        }

        const source = join(scratch.path, 'source');
        mkdirSync(join(source, 'data', 'alice', 'files'), { recursive: true });
        writeFileSync(join(source, 'config.php'), "<?php\n$CONFIG = ['instanceid' => 'oc1'];\n");
        const photo = join(source, 'data', 'alice', 'files', 'Zoë photo.jpg');
        writeFileSync(photo, randomBytes(300_000));
        writeFileSync(join(source, 'data', '.ocdata'), '');
        const files = treeDigest(source);
        await restic.ok(['backup', '--host', 'test-host', '--tag', 'files', source]);
        const dump = Buffer.from(
          Array.from({ length: 5000 }, (_, i) => `INSERT INTO oc_jobs VALUES (${i});\n`).join(''),
        );
        const stdinBackup = ['backup', '--host', 'test-host', '--tag', 'database', '--stdin'];
        await restic.ok([...stdinBackup, '--stdin-filename', 'owncloud-dbbackup.sql'], {
          input: dump,
        });

        const snapshots = JSON.parse(await restic.ok(['snapshots', '--json'])) as Snapshot[];
        expect(snapshots.map((s) => [s.tags, s.paths, s.hostname])).toEqual([
          [['files'], [source], 'test-host'],
          [['database'], ['/owncloud-dbbackup.sql'], 'test-host'],
        ]);
        const [filesSnapshot, databaseSnapshot] = snapshots as [Snapshot, Snapshot];

        // Each snapshot restores into a fresh directory as it was backed up, byte for byte.
        const filesTarget = join(scratch.path, 'restore-files');
        await restic.ok(['restore', filesSnapshot.id, '--target', filesTarget]);
        expect(treeDigest(join(filesTarget, source))).toEqual(files);
        const dumpTarget = join(scratch.path, 'restore-dump');
        await restic.ok(['restore', databaseSnapshot.id, '--target', dumpTarget]);
        expect(treeDigest(dumpTarget)).toEqual(digest({ 'owncloud-dbbackup.sql': dump }));

        // A keep policy that keeps the database snapshot only: the files snapshot is
        // forgotten, and prune deletes its data (the photo: 300 kB that do not compress).
        const storedBytes = () =>
          Object.values(storedFiles(backend, 'data')).reduce((n, b) => n + b.length, 0);
        expect(storedBytes()).toBeGreaterThan(300_000);
        const forget = ['forget', '--group-by', '', '--keep-tag', 'database', '--prune'];
        expect(await restic.ok(forget)).toMatch(/remove 1 snapshots:/);
        expect(storedBytes()).toBeLessThan(100_000);
        expect(Object.keys(storedFiles(backend, 'snapshots'))).toEqual([databaseSnapshot.id]);
        const check = await restic.ok(['check', '--read-data-subset', '100%']);
        expect(check).toContain('no errors were found');
      } finally {
        await backend.stop();
        scratch.remove();
        timings[kind] = Math.round(performance.now() - t0);
      }
      expect(existsSync(backend.dir)).toBe(false);
      if (backend.pid !== undefined) expect(isProcessRunning(backend.pid)).toBe(false);

      // No argv of any process so far held a secret, and the watch did see restic run.
      const seen = argvWatch.seen();
      expect(argvLeaks(seen, { 'restic password': password, ...backend.secrets })).toEqual([]);
      const resticRan = (command: string) =>
        seen.some((p) => p.argv[0]?.endsWith('/restic') && p.argv.includes(command));
      expect(resticRan('init') && resticRan('restore')).toBe(true);
    },
  );
});
