// `owncloud-backup verify`: a finished backup checks out; a flipped byte, or a dump that
// was cut short (yet recorded faithfully), does not.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/manifest.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { buildSampleInstance } from '../sample/instance.ts';
import { CLI } from '../support/backup-run.ts';

const scratch = makeScratchDir('verify');
chmodSync(scratch.path, 0o755);
let pristine: string;

function cli(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
}

function copyOfBackup(name: string): { dir: string; manifest: Manifest } {
  const dir = join(scratch.path, name);
  execFileSync('cp', ['-a', pristine, dir]);
  return {
    dir,
    manifest: JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest,
  };
}

beforeAll(async () => {
  const instance = await buildSampleInstance({
    database: { type: 'sqlite' },
    root: join(scratch.path, 'instance'),
  });
  const backups = join(scratch.path, 'backups');
  mkdirSync(backups);
  const run = spawnSync(
    process.execPath,
    [CLI, 'backup', '--owncloud-dir', instance.installDir, '--backup-dir', backups],
    { encoding: 'utf8' },
  );
  expect(run.status, run.stderr).toBe(0);
  pristine = join(backups, readdirSync(backups)[0]!);
});
afterAll(() => scratch.remove());

describe('owncloud-backup verify', () => {
  it('finds a fresh backup intact', () => {
    const run = cli('verify', pristine);
    expect(run.status, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(
      /ok {4} {2}owncloud-dbbackup_\d+\.bak\.zst: ends with the sqlite3 completion line/,
    );
    expect(run.stdout).toMatch(/holds the data directory's \.ocdata\/\.ncdata marker/);
    expect(run.stdout).toMatch(/: intact \(14 checks\)\.\n$/);
  });

  it('finds one flipped byte in the files archive', () => {
    const { dir, manifest } = copyOfBackup('flipped');
    const archive = join(dir, manifest.archives.find((a) => a.role === 'files')!.name);
    const bytes = readFileSync(archive);
    const middle = Math.floor(bytes.length / 2);
    bytes[middle] = bytes[middle]! ^ 0xff;
    writeFileSync(archive, bytes);
    const run = cli('verify', dir);
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(
      /FAILED {2}owncloud-files_\d+\.tar\.zst: sha256 is [0-9a-f]{64}, manifest says [0-9a-f]{64}/,
    );
    expect(run.stdout).toMatch(/DAMAGED \(\d+ of 14 checks failed\)/);
  });

  it('finds a dump without its completion line, even with matching checksums', () => {
    const { dir, manifest } = copyOfBackup('cut-short');
    const record = manifest.archives.find((a) => a.role === 'database')!;
    const path = join(dir, record.name);
    const sql = execFileSync('zstd', ['-dc', path]);
    const cut = sql.subarray(0, sql.lastIndexOf('COMMIT;'));
    const compressed = execFileSync('zstd', ['-q', '-c'], { input: cut });
    writeFileSync(path, compressed);
    record.size = compressed.length;
    record.sha256 = createHash('sha256').update(compressed).digest('hex');
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
    const run = cli('verify', dir);
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(
      /FAILED {2}owncloud-dbbackup_\d+\.bak\.zst: the dump does not end with 'COMMIT;': it was cut short/,
    );
    expect(run.stdout).toMatch(
      /FAILED {2}owncloud-dbbackup_\d+\.bak\.zst: \d+ bytes of SQL \(manifest: \d+\)/,
    );
  });

  it('says when a directory is not a backup', () => {
    const run = cli('verify', scratch.path);
    expect(run.status).toBe(1);
    expect(run.stderr).toBe(
      `owncloud-backup: error: ${scratch.path} has no manifest.json: it is not a finished backup.\n`,
    );
  });
});
