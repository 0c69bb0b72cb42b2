// The test harness: each real server starts on loopback, serves a real client, and leaves
// nothing behind, also when the test process is interrupted or killed.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { startMariaDb, writeMariaDbClientConfig } from '../harness/mariadb.ts';
import { createNetworkHost, sweepStaleNetworkHosts } from '../harness/netns.ts';
import { pgpassLine, startPostgres } from '../harness/postgres.ts';
import {
  isProcessRunning,
  listScratchDirs,
  makeScratchDir,
  sweepStaleScratchDirs,
} from '../harness/scratch.ts';
import { startSshd } from '../harness/sshd.ts';
import { requireTool } from '../harness/tools.ts';

const HOSTILE_PASSWORD = `p@ss 'w"ord' $(touch /tmp/pwned) \\ ; ü:é`;
const startTimes: Record<string, number> = {};

afterAll(() => {
  console.log(`server start times (ms): ${JSON.stringify(startTimes)}`);
});

async function timed<T>(name: string, start: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const server = await start();
  startTimes[name] = Math.round(performance.now() - t0);
  return server;
}

function expectGone(pid: number, dir: string): void {
  expect(isProcessRunning(pid), `process ${pid} still running`).toBe(false);
  expect(existsSync(dir), `${dir} still exists`).toBe(false);
}

describe('throwaway MariaDB', () => {
  it('serves mariadb-dump over TCP with a password user, then is gone', async () => {
    const db = await timed('mariadb', () => startMariaDb());
    try {
      await db.createDatabase({ name: 'owncloud', user: 'oc_admin', password: HOSTILE_PASSWORD });
      await db.query(
        "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(50)); INSERT INTO t VALUES (1, 'Zoë');",
        'owncloud',
      );
      const options = join(db.dir, 'client.cnf');
      writeMariaDbClientConfig(options, 'oc_admin', HOSTILE_PASSWORD);
      const dump = await execa(requireTool('mariadb-dump'), [
        `--defaults-extra-file=${options}`,
        '--single-transaction',
        '-h',
        db.host,
        '-P',
        String(db.port),
        'owncloud',
      ]);
      expect(dump.stdout).toContain("INSERT INTO `t` VALUES\n(1,'Zoë')");
      expect(dump.stdout).toMatch(/-- Dump completed on /);
      // The password really is checked: a wrong one is refused.
      writeMariaDbClientConfig(options, 'oc_admin', 'wrong');
      const refused = await execa(
        requireTool('mariadb-dump'),
        [`--defaults-extra-file=${options}`, '-h', db.host, '-P', String(db.port), 'owncloud'],
        { reject: false },
      );
      expect(refused.exitCode).not.toBe(0);
      expect(refused.stderr).toMatch(/Access denied/);
    } finally {
      await db.stop();
    }
    expectGone(db.pid, db.dir);
    expect(existsSync('/tmp/pwned')).toBe(false);
  });
});

describe('throwaway PostgreSQL', () => {
  it('serves pg_dump -w over TCP with a password user, then is gone', async () => {
    const db = await timed('postgres', () => startPostgres());
    try {
      await db.createDatabase({ name: 'owncloud', user: 'oc_admin', password: HOSTILE_PASSWORD });
      await db.query(
        "CREATE TABLE t (id INT PRIMARY KEY, name TEXT); INSERT INTO t VALUES (1, 'Zoë');",
        'owncloud',
      );
      await db.query('ALTER TABLE t OWNER TO oc_admin;', 'owncloud');
      const pgpass = join(db.dir, 'pgpass');
      writeFileSync(
        pgpass,
        pgpassLine(db.host, db.port, 'owncloud', 'oc_admin', HOSTILE_PASSWORD),
        { mode: 0o600 },
      );
      const args = ['-w', '-h', db.host, '-p', String(db.port), '-U', 'oc_admin', 'owncloud'];
      const dump = await execa(requireTool('pg_dump'), args, { env: { PGPASSFILE: pgpass } });
      expect(dump.stdout).toContain('1\tZoë');
      expect(dump.stdout).toMatch(/-- PostgreSQL database dump complete/);
      writeFileSync(pgpass, pgpassLine(db.host, db.port, 'owncloud', 'oc_admin', 'wrong'), {
        mode: 0o600,
      });
      const refused = await execa(requireTool('pg_dump'), args, {
        env: { PGPASSFILE: pgpass },
        reject: false,
      });
      expect(refused.exitCode).not.toBe(0);
      expect(refused.stderr).toMatch(/password authentication failed/);
    } finally {
      await db.stop();
    }
    expectGone(db.pid, db.dir);
  });
});

describe('throwaway sshd', () => {
  it('accepts the generated key with strict host key checking and carries rsync, then is gone', async () => {
    const sshd = await timed('sshd', () => startSshd());
    const scratch = makeScratchDir('rsync');
    try {
      const ssh = requireTool('ssh');
      const hello = await execa(ssh, [...sshd.clientArgs(), 'echo', 'hello from $(hostname)']);
      expect(hello.stdout).toMatch(/^hello from \S+$/);

      const source = join(scratch.path, 'src');
      mkdirSync(join(source, 'dir with space'), { recursive: true });
      writeFileSync(join(source, 'dir with space', 'Zoë.txt'), 'bytes\n');
      const rsh = [ssh, ...sshd.clientArgs().slice(0, -1)].map((a) => `'${a}'`).join(' ');
      await execa(requireTool('rsync'), [
        '-a',
        '-e',
        rsh,
        `${sshd.user}@${sshd.host}:${source}/`,
        join(scratch.path, 'copy'),
      ]);
      expect(readFileSync(join(scratch.path, 'copy', 'dir with space', 'Zoë.txt'), 'utf8')).toBe(
        'bytes\n',
      );

      // Strict checking is real: a known_hosts line for another key is refused (exit 255).
      writeFileSync(
        sshd.knownHostsPath,
        `[${sshd.host}]:${sshd.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC3MRaHtm0x1cjBEbSH4NRj2lV8mFhcRCfK7lxC7e3sE\n`,
      );
      const refused = await execa(ssh, [...sshd.clientArgs(), 'true'], { reject: false });
      expect(refused.exitCode).toBe(255);
      expect(refused.stderr).toMatch(
        /HOST IDENTIFICATION HAS CHANGED|Host key verification failed/,
      );
    } finally {
      scratch.remove();
      await sshd.stop();
    }
    expectGone(sshd.pid, sshd.dir);
  });

  it('runs as a separate host in a network namespace whose link can be cut', async () => {
    const network = createNetworkHost();
    try {
      const sshd = await timed('sshd-in-namespace', () => startSshd({ network }));
      try {
        const ssh = requireTool('ssh');
        const inside = await execa(ssh, [...sshd.clientArgs(), 'ip', '-o', '-4', 'addr', 'show']);
        expect(inside.stdout).toContain(network.hostAddress);
        network.cut();
        const t0 = performance.now();
        const cut = await execa(ssh, ['-o', 'ConnectTimeout=2', ...sshd.clientArgs(), 'true'], {
          reject: false,
        });
        expect(cut.exitCode).toBe(255);
        // ConnectTimeout bounds it; the margin is for a loaded machine, the point is no hang.
        expect(performance.now() - t0).toBeLessThan(60_000);
        network.restore();
        expect((await execa(ssh, [...sshd.clientArgs(), 'echo', 'back'])).stdout).toBe('back');
      } finally {
        await sshd.stop();
      }
    } finally {
      network.stop();
    }
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(network.name);
  });
});

describe('cleanup when the test process dies', () => {
  async function startServersInChild() {
    const child = spawn(
      process.execPath,
      [join(import.meta.dirname, '..', 'fixtures', 'start-servers-then-wait.ts')],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      child.once('exit', () => reject(new Error('child exited before its servers started')));
    });
    const started = JSON.parse(line) as { pids: number[]; dirs: string[]; namespace: string };
    for (const pid of started.pids) expect(isProcessRunning(pid)).toBe(true);
    return { child, exited, ...started };
  }

  it('stops every server and removes every scratch dir on SIGINT', async () => {
    const { child, exited, pids, dirs, namespace } = await startServersInChild();
    child.kill('SIGINT');
    await exited;
    await new Promise((r) => setTimeout(r, 200));
    for (const pid of pids) expect(isProcessRunning(pid), `server ${pid}`).toBe(false);
    for (const dir of dirs) expect(existsSync(dir), dir).toBe(false);
    expect(listScratchDirs(child.pid!)).toEqual([]);
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(namespace);
  });

  it('kills every server on SIGKILL, and the next run sweeps the dirs', async () => {
    const { child, exited, pids, dirs, namespace } = await startServersInChild();
    child.kill('SIGKILL');
    await exited;
    await new Promise((r) => setTimeout(r, 300));
    for (const pid of pids) expect(isProcessRunning(pid), `server ${pid}`).toBe(false);
    const swept = sweepStaleScratchDirs();
    for (const dir of dirs) {
      expect(swept).toContain(dir.split('/').pop());
      expect(existsSync(dir)).toBe(false);
    }
    expect(sweepStaleNetworkHosts()).toContain(namespace);
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(namespace);
  });

  it('ends an ssh ControlMaster left in its scratch dir when a test fails', async () => {
    const child = spawn(
      process.execPath,
      [join(import.meta.dirname, '..', 'fixtures', 'leave-ssh-master-then-fail.ts')],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const code = await exited;
    const { master } = JSON.parse(out.split('\n')[0]!) as { master: number };
    expect(code).not.toBe(0);
    // The master was detached (its own session) and survives its parent unless ended.
    for (let i = 0; i < 100 && isProcessRunning(master); i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(isProcessRunning(master)).toBe(false);
  });
});

describe('missing tools', () => {
  it('names the tool and the Debian package to install', () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      expect(() => requireTool('rsync')).toThrow(
        "The test harness needs 'rsync', which is not installed: install the Debian package rsync (script/bootstrap does).",
      );
    } finally {
      process.env.PATH = path;
    }
  });
});
