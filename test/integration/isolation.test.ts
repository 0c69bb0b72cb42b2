// The suite observes only its own processes: unrelated dump programs and a busy CPU
// elsewhere on the machine change nothing it sees or concludes.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killStrays, makeScratchDir } from '../harness/scratch.ts';
import { requireTool } from '../harness/tools.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { holdDumpLock, runBackupCli } from '../support/backup-run.ts';
import { sampleOn } from '../support/instances.ts';
import { ProcessTree } from '../support/processes.ts';

const scratch = makeScratchDir('isolation');
chmodSync(scratch.path, 0o755);
const noiseDb = join(scratch.path, 'unrelated.db');

/** Pids of the processes whose command line names `marker`, found by that name alone. */
function pidsNaming(marker: string): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        return readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(marker);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/**
 * Starts a command that is NOT a descendant of this test process (setsid --fork detaches
 * it and its parent exits at once), as another program on the machine would be.
 */
function startUnrelated(script: string): void {
  execFileSync(requireTool('setsid'), ['--fork', 'sh', '-c', script], { stdio: 'ignore' });
}

beforeAll(async () => {
  execFileSync(requireTool('sqlite3'), [noiseDb, 'CREATE TABLE t (x); INSERT INTO t VALUES (1);']);
  // Dump programs with the argument shapes the product's own dumps have, and a CPU hog,
  // each bounded in time and named by this test's scratch dir so it can be stopped.
  startUnrelated(`sleep 120 | exec sqlite3 -bail '${noiseDb}'`);
  startUnrelated(`sleep 120 | exec sqlite3 -bail -cmd '.timeout 5000' '${noiseDb}'`);
  startUnrelated(
    `exec timeout 120 sh -c 'while :; do :; done' unrelated-cpu-hog '${scratch.path}'`,
  );
  const deadline = Date.now() + 10_000;
  while (pidsNaming(noiseDb).length < 2 && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
});

afterAll(() => {
  for (const pid of pidsNaming(scratch.path))
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  killStrays();
  scratch.remove();
});

describe('the test harness watches its own processes only', () => {
  it('does not see dump programs that are not its own', () => {
    const unrelated = pidsNaming(noiseDb);
    expect(unrelated.length).toBeGreaterThanOrEqual(2);
    const own = new ProcessTree().list().map((p) => p.pid);
    for (const pid of unrelated) expect(own).not.toContain(pid);
  });

  it('sees its own children, grandchildren and orphans until they end', async () => {
    const tree = new ProcessTree();
    // sh starts sleep in the background, tells its pid, then exits: sleep is re-parented
    // away from this process.
    const child = spawn('sh', ['-c', 'sleep 30 >/dev/null & echo $!; sleep 0.5; exit 0'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const pid = await new Promise<number>((resolvePid) =>
      child.stdout.once('data', (chunk: Buffer) => resolvePid(Number(String(chunk).trim()))),
    );
    let seen: number[] = [];
    for (let i = 0; i < 200 && seen.length === 0; i++) {
      seen = tree
        .list()
        .filter((p) => p.pid === pid)
        .map((p) => p.pid);
      if (seen.length === 0) await new Promise((r) => setTimeout(r, 10));
    }
    expect(seen).toHaveLength(1);
    await new Promise((r) => child.once('exit', r));
    // Orphaned now, and still tracked.
    expect(tree.list().map((p) => p.pid)).toContain(seen[0]);
    process.kill(seen[0]!, 'SIGKILL');
    for (let i = 0; i < 200 && tree.list().some((p) => p.pid === seen[0]); i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(tree.list().map((p) => p.pid)).not.toContain(seen[0]);
  });

  it('times the look at a backup by its own dump while unrelated dumps and a CPU hog run', async () => {
    expect(pidsNaming(noiseDb).length).toBeGreaterThanOrEqual(2);
    const instance: SampleInstance = await sampleOn(
      'sqlite',
      // SQLite needs no server.
      { mariadb: undefined as never, postgres: undefined as never },
      scratch.path,
      1,
    );
    try {
      const lock = await holdDumpLock(instance);
      let maintenanceDuringDump: unknown;
      let dumpArgv: string[] = [];
      const run = await runBackupCli(
        ['--owncloud-dir', instance.installDir, '--backup-dir', join(scratch.path, 'backups')],
        {
          secrets: [],
          onDump: async (_cli, dump) => {
            dumpArgv = dump.argv;
            maintenanceDuringDump = instance.readConfig().maintenance;
            await lock.release();
          },
        },
      );
      expect(run.exitCode, run.stderr).toBe(0);
      expect(run.dumpSeen).toBe(true);
      // The dump the watcher reported is the backup's own, of this instance's database.
      expect(dumpArgv.join(' ')).toContain(join(instance.dataDir, 'owncloud_1.db'));
      expect(maintenanceDuringDump).toBe(true);
    } finally {
      instance.remove();
    }
  });
});

describe('the test log', () => {
  it('leaves out the debug lines of the @actions packages, and keeps everything else', () => {
    const script = `
      await import(${JSON.stringify(join(import.meta.dirname, '..', 'harness', 'quiet-log.ts'))});
      const core = await import('@actions/core');
      core.debug('[Request] ListArtifacts http://127.0.0.1/twirp');
      core.info('a line the test log keeps');
      process.stdout.write('::debug::written directly\\n');
    `;
    const env = { ...process.env };
    delete env.OCB_TEST_DEBUG;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      env,
      cwd: join(import.meta.dirname, '..', '..'),
    });
    expect(out).toBe('a line the test log keeps\n');
    const kept = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...env, OCB_TEST_DEBUG: '1' },
      cwd: join(import.meta.dirname, '..', '..'),
    });
    expect(kept).toContain('::debug::[Request] ListArtifacts');
  });
});
