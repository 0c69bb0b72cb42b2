// `owncloud-backup restore --snapshot`: a backup in a restic repository comes back over a
// changed instance, restic running on the target (host mode), for a local repository (over
// SSH), sftp:, rest: and s3:; afterwards every file (bytes, owners, modes, ACLs, xattrs,
// hard links) and every row equal the state at backup time, and maintenance mode is as it
// was. A snapshot that is not there, a backup missing one of its snapshots and bad usage are
// refused before anything changes; no secret is in any argv or output.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import {
  startResticBackend,
  type ResticBackend,
  type ResticBackendKind,
} from '../harness/restic-backends.ts';
import { repositoryArgs, restic } from '../support/restic-repository.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { runToolCli, type CliRun } from '../support/backup-run.ts';
import { errorLine, explain, sshArgs } from '../support/cli-checks.ts';
import { sampleOn, type DatabaseServers, type Engine } from '../support/instances.ts';
import { changeInstance, expectSameState, instanceState } from '../support/restore.ts';

let sshd: SshServer;
let mariadb: MariaDbServer;
const scratch = makeScratchDir('restore-restic');
chmodSync(scratch.path, 0o755);
let counter = 0;

beforeAll(async () => {
  [sshd, mariadb] = await Promise.all([startSshd(), startMariaDb()]);
});
afterAll(async () => {
  await Promise.all([sshd?.stop(), mariadb?.stop()]);
  scratch.remove();
});

async function run(
  command: 'backup' | 'list' | 'restore',
  instance: SampleInstance,
  backend: ResticBackend,
  transport: 'local' | 'ssh',
  extra: string[],
): Promise<CliRun> {
  const repo = repositoryArgs(backend);
  return runToolCli(
    command,
    [
      ...(command === 'list' ? [] : ['--owncloud-dir', instance.installDir]),
      ...(command === 'backup' ? ['--destination', 'restic'] : []),
      ...repo.args,
      ...(transport === 'ssh' ? sshArgs(sshd) : []),
      ...extra,
    ],
    { secrets: [...repo.secrets, instance.dbPassword], env: repo.env },
  );
}

function expectClean(done: CliRun, backend: ResticBackend): void {
  expect(done.leaks).toEqual([]);
  expect(done.processesSeen).toBeGreaterThan(0);
  for (const secret of repositoryArgs(backend).secrets) {
    expect(done.stdout).not.toContain(secret);
    expect(done.stderr).not.toContain(secret);
  }
}

/** The directories a restore from a repository restores into, left anywhere under a path. */
function incomingUnder(dir: string): string[] {
  return execFileSync('find', [dir, '-name', '.owncloud-restore-incoming-*', '-print0'], {
    encoding: 'utf8',
  })
    .split('\0')
    .filter(Boolean);
}

/** A backup of a fresh sample into the backend; its state then, and its manifest snapshot's id. */
async function backedUp(
  engine: Engine,
  backend: ResticBackend,
  transport: 'local' | 'ssh',
): Promise<{
  instance: SampleInstance;
  before: Awaited<ReturnType<typeof instanceState>>;
  snapshot: string;
  name: string;
}> {
  const servers = { mariadb } as DatabaseServers;
  const instance = await sampleOn(engine, servers, scratch.path, counter++);
  const backup = await run('backup', instance, backend, transport, ['--restic-init']);
  expect(backup.exitCode, explain(backup)).toBe(0);
  expectClean(backup, backend);
  const name = /Backup complete: (owncloud-backup-\S+) in/.exec(backup.stdout)![1]!;
  const list = await run('list', instance, backend, transport, []);
  expect(list.exitCode, explain(list)).toBe(0);
  const line = list.stdout.split('\n').find((l) => l.startsWith(name));
  expect(line, list.stdout).toBeDefined();
  const snapshot = line!.split(/\s+/)[1]!;
  expect(snapshot).toMatch(/^[0-9a-f]{8}$/);
  const leftOut = [
    `${String(instance.config.dbname)}.db`,
    `${String(instance.config.dbname)}.db-journal`,
  ];
  const before = await instanceState(instance, { files: { leftOut } });
  return { instance, before, snapshot, name };
}

describe.each([
  ['local', 'ssh', 'sqlite'],
  ['sftp', 'local', 'mysql'],
  ['rest', 'local', 'sqlite'],
  ['s3', 'local', 'sqlite'],
] as const)(
  'restore --snapshot from a restic repository (%s, %s transport, %s)',
  (kind, transport, engine) => {
    it('brings back the files, rows and maintenance state of the backup over a changed instance', async () => {
      const backend = await startResticBackend(kind as ResticBackendKind);
      try {
        const { instance, before, snapshot, name } = await backedUp(engine, backend, transport);
        await changeInstance(instance);
        const leftOut = [
          `${String(instance.config.dbname)}.db`,
          `${String(instance.config.dbname)}.db-journal`,
        ];
        const changed = await instanceState(instance, { files: { leftOut } });
        expect(changed.rows).not.toEqual(before.rows);
        const callsBefore = instance.occCalls().length;

        // The local repository by `latest`, the others by the id list shows.
        const restore = await run('restore', instance, backend, transport, [
          '--snapshot',
          kind === 'local' ? 'latest' : snapshot,
        ]);
        expect(restore.exitCode, explain(restore)).toBe(0);
        expectClean(restore, backend);
        expect(restore.stdout).toContain(`Restore complete: ${name} onto`);
        expect(restore.stderr).toContain('all present in');
        expect(restore.stderr).toMatch(/Row counts: \d+ tables/);
        expectSameState(await instanceState(instance, { files: { leftOut } }), before);
        expect(
          existsSync(join(instance.dataDir, 'alice', 'files', 'new after the backup.txt')),
        ).toBe(false);
        // changeInstance left maintenance mode on; the backup was taken with it off.
        expect(instance.readConfig().maintenance).toBe(false);
        expect(String(instance.readConfig()['data-fingerprint'])).toMatch(/^[0-9a-f]{32}$/);
        const calls = instance
          .occCalls()
          .slice(callsBefore)
          .map((c) => c.args.join(' '));
        expect(calls).toContain('maintenance:data-fingerprint');
        expect(calls.at(-1)).toBe('maintenance:mode --off');
        expect(restore.stdout).toMatch(/previous state kept in .*\.owncloud-restore-previous-/);
        expect(incomingUnder(instance.root)).toEqual([]);
        instance.remove();
      } finally {
        await backend.stop();
      }
    });
  },
);

describe('restore --snapshot refuses before changing anything', () => {
  it('a snapshot that is not there, and a backup missing its database snapshot', async () => {
    const backend = await startResticBackend('local');
    try {
      const { instance, before, name } = await backedUp('sqlite', backend, 'local');
      const leftOut = [
        `${String(instance.config.dbname)}.db`,
        `${String(instance.config.dbname)}.db-journal`,
      ];
      const absent = await run('restore', instance, backend, 'local', ['--snapshot', 'deadbeef']);
      expect(absent.exitCode, explain(absent)).toBe(1);
      expect(errorLine(absent)).toMatch(
        /No backup of this tool in the repository has the snapshot 'deadbeef'.*Nothing was changed/,
      );
      expectClean(absent, backend);

      // The database part of the backup forgotten: the backup is refused by name.
      const listed = JSON.parse(restic(backend, ['snapshots', '--json']).toString()) as {
        id: string;
        tags: string[];
      }[];
      const database = listed.find((s) => s.tags.includes('part=database'))!;
      restic(backend, ['forget', database.id]);
      const damaged = await run('restore', instance, backend, 'local', ['--snapshot', name]);
      expect(damaged.exitCode, explain(damaged)).toBe(1);
      expect(errorLine(damaged)).toContain(
        `The backup ${name} in ${backend.kind === 'local' ? backend.repository : ''}`,
      );
      expect(errorLine(damaged)).toMatch(
        new RegExp(
          `the snapshot database \\(${database.id.slice(0, 8)}\\) it names is not in the repository.*Nothing was changed`,
        ),
      );
      expectSameState(await instanceState(instance, { files: { leftOut } }), before);
      expect(instance.readConfig().maintenance).toBe(false);
      instance.remove();
    } finally {
      await backend.stop();
    }
  });

  it('bad usage: a snapshot with a backup directory, with --path, or not a snapshot', async () => {
    const backend = await startResticBackend('local');
    try {
      const instance = await sampleOn('sqlite', {} as DatabaseServers, scratch.path, counter++);
      const cases: [string[], RegExp][] = [
        [['/tmp', '--snapshot', 'latest'], /restore --snapshot takes no BACKUP-DIR/],
        [
          ['--snapshot', 'latest', '--path', 'alice/files/x'],
          /--snapshot .* does not go with --path/,
        ],
        [
          ['--snapshot', 'x;rm -rf /'],
          /Invalid option --snapshot: 'x;rm -rf \/' is not a snapshot/,
        ],
      ];
      for (const [args, message] of cases) {
        const refused = await run('restore', instance, backend, 'local', args);
        expect(refused.exitCode, explain(refused)).toBe(2);
        expect(errorLine(refused)).toMatch(message);
      }
      instance.remove();
    } finally {
      await backend.stop();
    }
  });
});
