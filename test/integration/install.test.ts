// Installing the command on a server as the README says: the `npm pack` tarball installs
// offline (the bundle is self-contained: no dependencies), runs on Node 24, and on an older
// Node.js says in one line which Node.js it needs instead of crashing inside the bundle.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeScratchDir } from '../harness/scratch.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const VERSION = (
  JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
).version;
const NODE_24 = join(ROOT, 'node_modules', '.bin', 'node');
// Debian 12's own Node.js, on which npm runs here.
const SYSTEM_NODE = '/usr/bin/node';

const scratch = makeScratchDir('install');
const prefix = join(scratch.path, 'prefix');
let bin: string;

beforeAll(() => {
  const tarball = execFileSync(
    'npm',
    ['pack', '--silent', '--pack-destination', scratch.path, '--no-audit', '--no-fund'],
    { cwd: ROOT, encoding: 'utf8' },
  ).trim();
  // Offline, with an empty cache: anything the package would fetch fails the install.
  execFileSync(
    'npm',
    [
      'install',
      '--global',
      '--prefix',
      prefix,
      '--offline',
      '--cache',
      join(scratch.path, 'empty-cache'),
      '--no-audit',
      '--no-fund',
      join(scratch.path, tarball),
    ],
    { cwd: scratch.path, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  bin = join(prefix, 'bin', 'owncloud-backup');
}, 120_000);
afterAll(() => scratch.remove());

describe('the command installed from the npm pack tarball', () => {
  it('holds the launcher and the bundle only, with no dependencies to fetch', () => {
    const installed = join(prefix, 'lib', 'node_modules', 'owncloud-backup');
    const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    expect(manifest.dependencies ?? {}).toEqual({});
    expect(
      execFileSync('find', ['.', '-type', 'f'], { cwd: installed, encoding: 'utf8' })
        .trim()
        .split('\n')
        .sort(),
    ).toEqual([
      './README.md',
      './bin/owncloud-backup.cjs',
      './dist/cli/index.js',
      './dist/cli/licenses.txt',
      './dist/package.json',
      './package.json',
    ]);
  });

  it('runs on Node 24', () => {
    expect(execFileSync(NODE_24, ['--version'], { encoding: 'utf8' })).toMatch(/^v24\./);
    const run = spawnSync(NODE_24, [bin, '--version'], { encoding: 'utf8' });
    expect([run.status, run.stdout, run.stderr]).toEqual([0, `owncloud-backup ${VERSION}\n`, '']);
    const help = spawnSync(NODE_24, [bin, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: owncloud-backup backup \[options\]/);
  });

  it('runs through its #! line with the Node 24 found first on PATH', () => {
    const run = spawnSync(bin, ['--version'], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${join(ROOT, 'node_modules', '.bin')}:/usr/bin:/bin` },
    });
    expect([run.status, run.stdout]).toEqual([0, `owncloud-backup ${VERSION}\n`]);
  });

  it.each([
    [
      'run with it',
      (args: string[]) => spawnSync(SYSTEM_NODE, [bin, ...args], { encoding: 'utf8' }),
    ],
    [
      'found first on PATH',
      (args: string[]) =>
        spawnSync(bin, args, { encoding: 'utf8', env: { ...process.env, PATH: '/usr/bin:/bin' } }),
    ],
  ])('on an older Node.js (%s) says in one line which Node.js it needs', (_, start) => {
    const old = execFileSync(SYSTEM_NODE, ['--version'], { encoding: 'utf8' }).trim();
    expect(Number(/^v(\d+)\./.exec(old)![1])).toBeLessThan(24);
    for (const args of [['--version'], ['backup', '--owncloud-dir', '/nowhere']]) {
      const run = start(args);
      expect(run.status).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toBe(
        `owncloud-backup: error: needs Node.js 24 or newer, this is Node.js ${old.slice(1)} (${SYSTEM_NODE}); install Node.js 24 (https://nodejs.org/en/download) and run owncloud-backup with it.\n`,
      );
    }
  });
});
