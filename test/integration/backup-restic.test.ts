// A backup into a restic repository (`--destination restic`), restic running where the
// instance is (this machine, or through the harness's sshd): on a local repository, sftp:,
// rest: and s3:, what the repository holds is restored with restic and compared with the
// instance (every file's bytes, mode, owner, ACL, xattr; every row of the dump); `list`
// shows the backup; the live pass's snapshot is gone, the window's is the backup; what
// changed between the passes is in its window state; a backup that fails inside the window
// leaves nothing of itself in the repository and removes no older backup; a missing
// repository is only created with --restic-init; no secret is in any argv or output.
import { execFile, execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import {
  startResticBackend,
  type ResticBackend,
  type ResticBackendKind,
} from '../harness/restic-backends.ts';
import { requireTool } from '../harness/tools.ts';
import {
  RESTIC_PASSWORD as PASSWORD,
  repositoryArgs,
  restic,
} from '../support/restic-repository.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { sqliteDatabase } from '../sample/database.ts';
import { holdDumpLock, runToolCli, type CliRun } from '../support/backup-run.ts';
import { explain, sshArgs } from '../support/cli-checks.ts';
import { expectSameDatabase, withoutMtime } from '../support/restore.ts';
import { holdOccAt } from '../support/occ-hold.ts';
import { sampleOn, type DatabaseServers } from '../support/instances.ts';
import { partTags as partTagsFor } from '../../src/backup-restic.ts';
import { backupName } from '../../src/naming.ts';
import { selectKept } from '../../src/retention.ts';
import { diffTrees, snapshotTree } from '../support/tree.ts';

let sshd: SshServer;
const scratch = makeScratchDir('backup-restic');
chmodSync(scratch.path, 0o755);
let counter = 0;
/** The time a backup name stands for (UTC). */
function backupTime(name: string): number {
  const [, d, t] = /(\d{8})-(\d{6})$/.exec(name)!;
  return Date.UTC(
    +d!.slice(0, 4),
    +d!.slice(4, 6) - 1,
    +d!.slice(6),
    +t!.slice(0, 2),
    +t!.slice(2, 4),
    +t!.slice(4),
  );
}

/** SQLite samples only: no database server is needed. */
const SQLITE_ONLY = {} as DatabaseServers;
const backends = new Map<ResticBackendKind, ResticBackend>();

beforeAll(async () => {
  sshd = await startSshd();
  for (const kind of ['local', 'sftp', 'rest', 's3'] as const)
    backends.set(kind, await startResticBackend(kind));
});
afterAll(async () => {
  for (const backend of backends.values()) await backend.stop();
  await sshd?.stop();
  scratch.remove();
});

interface Listed {
  id: string;
  tags?: string[];
  time: string;
  paths: string[];
}
const snapshots = (backend: ResticBackend): Listed[] =>
  JSON.parse(restic(backend, ['snapshots', '--json']).toString()) as Listed[];
const partOf = (s: Listed) => s.tags?.find((t) => t.startsWith('part='))?.slice(5);
const backupOf = (s: Listed) => s.tags?.find((t) => t.startsWith('backup='))?.slice(7);

async function backUp(
  instance: SampleInstance,
  backend: ResticBackend,
  transport: 'local' | 'ssh',
  extra: string[] = [],
  onSpawn?: Parameters<typeof runToolCli>[2]['onSpawn'],
): Promise<CliRun> {
  const repo = repositoryArgs(backend);
  return runToolCli(
    'backup',
    [
      '--owncloud-dir',
      instance.installDir,
      '--destination',
      'restic',
      ...repo.args,
      ...(transport === 'ssh' ? sshArgs(sshd) : []),
      ...extra,
    ],
    {
      secrets: [...repo.secrets, instance.dbPassword],
      env: repo.env,
      ...(onSpawn ? { onSpawn } : {}),
    },
  );
}

/**
 * A backup (local transport) held where it switches maintenance mode on, after the live
 * pass: `meanwhile` runs there (given the command's process), then the backup goes on.
 */
async function backUpHeldAtWindow(
  instance: SampleInstance,
  backend: ResticBackend,
  extra: string[],
  meanwhile: (child: ChildProcess) => Promise<void> | void,
): Promise<CliRun> {
  const hold = holdOccAt(instance, 'maintenance:mode --on');
  let child: ChildProcess | undefined;
  const running = backUp(instance, backend, 'local', extra, (c) => (child = c));
  try {
    const occPid = await Promise.race([hold.reached(), running.then(() => -1)]);
    expect(occPid, 'the backup never switched maintenance mode on').toBeGreaterThan(0);
    await meanwhile(child!);
  } finally {
    hold.release();
  }
  return running;
}

function expectClean(run: CliRun, backend: ResticBackend): void {
  expect(run.leaks).toEqual([]);
  expect(run.processesSeen).toBeGreaterThan(0);
  for (const secret of repositoryArgs(backend).secrets) {
    expect(run.stdout).not.toContain(secret);
    expect(run.stderr).not.toContain(secret);
  }
}

/** The files snapshot restored with restic, compared with the instance; the dump's rows too. */
async function expectBackupEqualsInstance(
  instance: SampleInstance,
  backend: ResticBackend,
  name: string,
): Promise<void> {
  const ours = snapshots(backend).filter((s) => backupOf(s) === name);
  expect(ours.map(partOf).sort()).toEqual(['database', 'files', 'install', 'manifest']);
  const files = ours.find((s) => partOf(s) === 'files')!;
  const install = ours.find((s) => partOf(s) === 'install')!;
  const target = join(scratch.path, `restored-${counter++}`);
  restic(backend, ['restore', install.id, '--target', target]);
  restic(backend, ['restore', files.id, '--target', target]);
  const dbFile = `${instance.config.dbname as string}.db`;
  const live = new Set([dbFile, `${dbFile}-journal`, `${dbFile}-wal`, `${dbFile}-shm`]);
  const expected = await snapshotTree(instance.dataDir, { exclude: (p) => live.has(p) });
  expect(diffTrees(expected, await snapshotTree(join(target, instance.dataDir)))).toEqual([]);
  expect(expected.size).toBeGreaterThan(60);
  // occ rewrote config.php during the run (maintenance on, then off): same bytes, new mtime.
  const config = withoutMtime(
    await snapshotTree(join(instance.installDir, 'config')),
    'config.php',
  );
  const restoredConfig = await snapshotTree(join(target, instance.installDir, 'config'));
  expect(diffTrees(config, withoutMtime(restoredConfig, 'config.php'))).toEqual([]);
  // The dump: a file of its own in the database snapshot, loaded into a new database.
  const database = ours.find((s) => partOf(s) === 'database')!;
  const manifest = JSON.parse(
    restic(backend, [
      'dump',
      ours.find((s) => partOf(s) === 'manifest')!.id,
      '/manifest.json',
    ]).toString(),
  ) as {
    database: { dumpFile: string; rowCounts: Record<string, number> };
    snapshots: { files: string };
  };
  expect(manifest.snapshots.files).toBe(files.id.slice(0, manifest.snapshots.files.length));
  const sql = restic(backend, ['dump', database.id, `/${manifest.database.dumpFile}`]);
  const loaded = join(scratch.path, `loaded-${counter++}.db`);
  execFileSync(requireTool('sqlite3'), ['-bail', loaded], { input: sql });
  const rows = await expectSameDatabase(instance.database, sqliteDatabase(loaded));
  expect(rows).toBeGreaterThan(20);
  expect(Object.values(manifest.database.rowCounts).reduce((a, b) => a + b, 0)).toBe(rows);
}

describe.each([
  ['local', 'ssh'],
  ['sftp', 'local'],
  ['rest', 'local'],
  ['s3', 'local'],
] as const)('a backup into a restic repository (%s, %s transport)', (kind, transport) => {
  it('holds the instance as it was: files, the dump, a manifest; list shows it', async () => {
    const backend = backends.get(kind)!;
    const instance = await sampleOn('sqlite', SQLITE_ONLY, scratch.path, counter++);
    const first = await backUp(instance, backend, transport, ['--restic-init']);
    expect(first.exitCode, explain(first)).toBe(0);
    expectClean(first, backend);
    const name = /Backup complete: (owncloud-backup-\d{8}-\d{6}) in the restic repository/.exec(
      first.stdout,
    )?.[1];
    expect(name, first.stdout).toBeDefined();
    await expectBackupEqualsInstance(instance, backend, name!);

    const repo = repositoryArgs(backend);
    const list = await runToolCli(
      'list',
      [...repo.args, ...(transport === 'ssh' ? sshArgs(sshd) : [])],
      { secrets: repo.secrets, env: repo.env },
    );
    expect(list.exitCode, explain(list)).toBe(0);
    expectClean(list, backend);
    const line = list.stdout.split('\n').find((l) => l.startsWith(name!));
    expect(line, list.stdout).toMatch(/ sqlite /);
    expect(line).toContain(String(instance.config.version));
    instance.remove();
  });
});

/** A TCP proxy in front of the sshd that counts the bytes each way: what the runner's ssh gets. */
async function countingProxy(target: SshServer) {
  const counts = { received: 0, sent: 0 };
  const server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    upstream.on('data', (chunk: Buffer) => (counts.received += chunk.length));
    client.on('data', (chunk: Buffer) => (counts.sent += chunk.length));
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    counts,
    args: [
      ...['--host', '127.0.0.1', '--port', String(port)],
      ...['--ssh-key-file', target.privateKeyPath],
      ...['--known-hosts', target.knownHostsLine.replace(/^\S+/, `[127.0.0.1]:${port}`)],
    ],
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('a restic backup over SSH (host mode)', () => {
  it('brings no file content to the runner: it receives under 1 % of the data', async () => {
    const backend = await startResticBackend('local');
    const proxy = await countingProxy(sshd);
    try {
      const instance = await sampleOn('sqlite', SQLITE_ONLY, scratch.path, counter++);
      const big = join(instance.dataDir, 'alice', 'files', 'video.bin');
      writeFileSync(big, randomBytes(64 * 1024 * 1024));
      chownSync(big, instance.owner.uid, instance.owner.gid);
      const repo = repositoryArgs(backend);
      const run = await runToolCli(
        'backup',
        [
          ...['--owncloud-dir', instance.installDir, '--destination', 'restic', '--restic-init'],
          ...repo.args,
          ...proxy.args,
        ],
        { secrets: [...repo.secrets], env: repo.env },
      );
      expect(run.exitCode, explain(run)).toBe(0);
      const data = 64 * 1024 * 1024;
      const restic = { ...proxy.counts };
      expect(restic.received, `received ${restic.received} bytes`).toBeLessThan(data / 100);

      // The same instance into a backup directory through the same proxy: every byte comes.
      proxy.counts.received = 0;
      const dir = join(instance.root, 'backups');
      mkdirSync(dir);
      const copy = await runToolCli(
        'backup',
        ['--owncloud-dir', instance.installDir, '--backup-dir', dir, ...proxy.args],
        { secrets: [] },
      );
      expect(copy.exitCode, explain(copy)).toBe(0);
      expect(proxy.counts.received).toBeGreaterThan(data);
      instance.remove();
    } finally {
      await proxy.close();
      await backend.stop();
    }
  });
});

describe('a restic backup (local repository)', () => {
  it('holds what changed between the passes in its state inside the window', async () => {
    const backend = backends.get('local')!;
    const instance = await sampleOn('sqlite', SQLITE_ONLY, scratch.path, counter++);
    const docs = join(instance.dataDir, 'alice/files/Documents');
    const run = await backUpHeldAtWindow(instance, backend, ['--restic-init'], () => {
      writeFileSync(join(docs, 'Welcome.txt'), 'rewritten after the live pass\n');
      writeFileSync(join(docs, 'added in the window.txt'), 'new\n');
    });
    expect(run.exitCode, explain(run)).toBe(0);
    const name = /Backup complete: (owncloud-backup-\S+) in/.exec(run.stdout)![1]!;
    await expectBackupEqualsInstance(instance, backend, name);
    const files = snapshots(backend).find((s) => backupOf(s) === name && partOf(s) === 'files')!;
    expect(restic(backend, ['dump', files.id, join(docs, 'Welcome.txt')]).toString()).toBe(
      'rewritten after the live pass\n',
    );
    instance.remove();
  });

  it('leaves nothing of a backup that failed in the window, and removes no older backup', async () => {
    const backend = backends.get('local')!;
    const instance = await sampleOn('sqlite', SQLITE_ONLY, scratch.path, counter++);
    const good = await backUp(instance, backend, 'local', ['--restic-init']);
    expect(good.exitCode, explain(good)).toBe(0);
    const before = snapshots(backend)
      .map((s) => s.id)
      .sort();
    // Once the live pass is done (maintenance mode going on), the database is locked: the
    // dump inside the window fails (or waits until the dump-timeout gives up).
    let lock: { release: () => Promise<void> } | undefined;
    const failed = await backUpHeldAtWindow(
      instance,
      backend,
      ['--dump-timeout', '2', '--keep-last', '1'],
      async () => {
        lock = await holdDumpLock(instance);
      },
    );
    await lock?.release();
    expect(failed.exitCode, explain(failed)).toBe(1);
    expect(failed.stderr).toContain('Forgot the');
    expect(failed.stderr).not.toContain('Retention');
    expect(
      snapshots(backend)
        .map((s) => s.id)
        .sort(),
    ).toEqual(before);
    expect(instance.readConfig().maintenance).toBe(false);
    instance.remove();
  });

  it('keeps, after daily backups over 60 days, exactly what the keep-* policy says', async () => {
    const backend = await startResticBackend('local');
    try {
      const instance = await sampleOn('sqlite', SQLITE_ONLY, scratch.path, counter++);
      restic(backend, ['init']);
      // 59 earlier nights (02:00 UTC, a few nights missed, one with two runs), each a
      // complete backup as the tool tags it; two of them with a files part as well.
      const now = Date.now();
      const earlier: { name: string; time: Date }[] = [];
      for (let day = 59; day >= 1; day--) {
        if (day === 40 || day === 41 || day === 17) continue;
        const time = new Date(
          Math.floor((now - day * 86_400_000) / 86_400_000) * 86_400_000 + 7_200_000,
        );
        earlier.push({ name: backupName(time), time });
        if (day === 30) {
          const again = new Date(time.getTime() + 3_600_000);
          earlier.push({ name: backupName(again), time: again });
        }
      }
      const id = String(instance.config.instanceid);
      const seed = (backup: { name: string; time: Date }, part: 'manifest' | 'files') =>
        new Promise<void>((resolve, reject) => {
          const child = execFile(
            requireTool('restic'),
            [
              ...['backup', '--quiet', '--host', id, '--stdin', '--stdin-filename', `${part}.json`],
              ...['--time', backup.time.toISOString().slice(0, 19).replace('T', ' ')],
              ...partTagsFor(id, backup.name, part).flatMap((tag) => ['--tag', tag]),
            ],
            {
              env: {
                ...process.env,
                RESTIC_REPOSITORY: backend.repository,
                RESTIC_PASSWORD: PASSWORD,
                TZ: 'UTC',
              },
            },
            (error) => (error ? reject(error) : resolve()),
          );
          child.stdin!.end(`{"seeded":"${backup.name}"}\n`);
        });
      // A few at a time (restic's backup takes a shared lock).
      const seeds = [
        ...earlier.map((backup) => () => seed(backup, 'manifest')),
        ...[earlier[0]!, earlier[earlier.length - 1]!].map((backup) => () => seed(backup, 'files')),
      ];
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          for (let next = seeds.shift(); next; next = seeds.shift()) await next();
        }),
      );

      const policy = { last: 0, daily: 7, weekly: 4, monthly: 3, yearly: 0 };
      const run = await backUp(instance, backend, 'local', [
        '--keep-daily',
        '7',
        '--keep-weekly',
        '4',
        '--keep-monthly',
        '3',
        '--check',
        'metadata',
      ]);
      expect(run.exitCode, explain(run)).toBe(0);
      expect(run.stdout).toContain('restic check (metadata): no errors');
      const name = /Backup complete: (owncloud-backup-\S+) in/.exec(run.stdout)![1]!;
      // selectKept is restic forget's rules (proven against restic in retention-restic.test.ts).
      const expected = selectKept(
        [...earlier, { name, time: new Date(backupTime(name)) }],
        policy,
        name,
      );
      expect(expected.remove.length).toBeGreaterThan(30);
      const left = snapshots(backend);
      const kept = [...new Set(left.map(backupOf))].sort();
      expect(kept).toEqual(expected.keep.map((b) => b.name).sort());
      // Every part of a removed backup went with it (the oldest had a files part).
      expect(left.some((s) => backupOf(s) === earlier[0]!.name)).toBe(false);
      expect(
        left
          .filter((s) => backupOf(s) === earlier[earlier.length - 1]!.name)
          .map(partOf)
          .sort(),
      ).toEqual(['files', 'manifest']);
      instance.remove();
    } finally {
      await backend.stop();
    }
  });

  it('interrupted in the window: maintenance mode restored, exit 130, nothing of it left', async () => {
    const backend = backends.get('local')!;
    const instance = await sampleOn('sqlite', SQLITE_ONLY, scratch.path, counter++);
    const good = await backUp(instance, backend, 'local', ['--restic-init']);
    expect(good.exitCode, explain(good)).toBe(0);
    const before = snapshots(backend)
      .map((s) => s.id)
      .sort();
    const run = await backUpHeldAtWindow(instance, backend, ['--keep-last', '1'], (child) => {
      child.kill('SIGINT');
    });
    expect(run.exitCode, explain(run)).toBe(130);
    expect(instance.readConfig().maintenance).toBe(false);
    expect(run.stderr).not.toContain('Retention');
    expect(
      snapshots(backend)
        .map((s) => s.id)
        .sort(),
    ).toEqual(before);
    instance.remove();
  });

  it('creates a missing repository only with --restic-init', async () => {
    const instance = await sampleOn('sqlite', SQLITE_ONLY, scratch.path, counter++);
    const missing: ResticBackend = {
      ...backends.get('local')!,
      repository: join(scratch.path, `no-repository-${counter++}`),
    };
    const run = await backUp(instance, missing, 'local');
    expect(run.exitCode, explain(run)).toBe(1);
    expect(run.stderr).toMatch(/There is no restic repository at .*Set restic-init to true/);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(spawnSync('test', ['-e', missing.repository]).status).toBe(1);
    expect(instance.readConfig().maintenance).toBe(false);
    instance.remove();
  });
});
