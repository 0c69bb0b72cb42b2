// The tree snapshot helper is what proves restored backups equal their source, so it must
// itself be proven able to fail: a `cp -a` copy compares equal, and each single change to the
// copy is reported as exactly that path and kind of difference.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { diffTrees, snapshotTree } from '../support/tree.ts';

const UNICODE_NAME = 'ünï cödé file.txt';
const BACKSLASH_NAME = 'back\\slash.txt';
const NEWLINE_NAME = 'new\nline.txt';
const HOSTILE_NAME = `-dash $(touch pwned) 'q"*?[.txt`;
// A fixed past mtime, so a mutation that rewrites content is distinguishable from mtime drift.
const FIXED_TIME = new Date('2020-01-02T03:04:05Z');

let base: string;
let source: string;
let copy: string;

function run(command: string, ...args: string[]): void {
  execFileSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function write(root: string, relativePath: string, content: string, mode = 0o644): void {
  const file = path.join(root, relativePath);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
  fs.chmodSync(file, mode);
}

function buildSourceTree(root: string): void {
  write(root, 'docs/nested/deep.txt', 'deep content\n');
  write(root, UNICODE_NAME, 'unicode\n');
  write(root, BACKSLASH_NAME, 'backslash\n');
  write(root, NEWLINE_NAME, 'newline\n');
  write(root, HOSTILE_NAME, 'hostile\n');
  write(root, '.hidden', 'hidden\n', 0o600);
  write(root, 'bin/tool', '#!/bin/sh\n', 0o4755);
  write(root, 'hard-a', 'linked\n');
  fs.linkSync(path.join(root, 'hard-a'), path.join(root, 'docs/hard-b'));
  fs.mkdirSync(path.join(root, 'empty'));
  fs.chmodSync(path.join(root, 'empty'), 0o755);
  fs.mkdirSync(path.join(root, 'shared'), { mode: 0o1777 });
  fs.chmodSync(path.join(root, 'shared'), 0o1777);
  fs.symlinkSync('docs/nested/deep.txt', path.join(root, 'link'));
  write(root, 'acl.txt', 'acl\n', 0o640);
  run('setfacl', '-m', 'u:nobody:r--', '--', path.join(root, 'acl.txt'));
  run('setfacl', '-m', 'u:nobody:r--', '--', path.join(root, BACKSLASH_NAME));
  run('setfacl', '-d', '-m', 'u:nobody:rx', '--', path.join(root, 'shared'));
  write(root, 'xattr.txt', 'xattr\n');
  run('setfattr', '-n', 'user.test', '-v', 'value', '--', path.join(root, 'xattr.txt'));
  run('setfattr', '-n', 'user.test', '-v', 'value', '--', path.join(root, NEWLINE_NAME));
  write(root, 'data/www.txt', 'www-data\n', 0o640);
  run('chown', '-R', '33:33', '--', path.join(root, 'data'));
  for (const file of ['docs/nested/deep.txt', UNICODE_NAME, 'hard-a', 'data/www.txt', 'acl.txt']) {
    fs.utimesSync(path.join(root, file), FIXED_TIME, FIXED_TIME);
  }
}

async function diffCopy(): Promise<string[]> {
  return diffTrees(await snapshotTree(source), await snapshotTree(copy));
}

beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'ocb-tree-test-'));
  source = path.join(base, 'source');
  copy = path.join(base, 'copy');
  fs.mkdirSync(source);
  buildSourceTree(source);
  run('cp', '-a', '--', source, copy);
});

afterEach(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

describe('snapshotTree', () => {
  it('records the metadata a backup must preserve, also for hostile names', async () => {
    const snapshot = await snapshotTree(source);
    const hexValue = `0x${Buffer.from('value').toString('hex')}`;

    expect(snapshot.has('')).toBe(false);
    expect(snapshot.get('empty')).toMatchObject({ type: 'dir', mode: 0o755 });
    expect(snapshot.get('shared')).toMatchObject({
      type: 'dir',
      mode: 0o1777,
      acl: 'default:user::rwx,default:user:65534:r-x,default:group::rwx,default:mask::rwx,default:other::rwx',
    });
    expect(snapshot.get('bin/tool')).toMatchObject({ mode: 0o4755 });
    expect(snapshot.get('acl.txt')).toMatchObject({ mode: 0o640, acl: 'user:65534:r--,mask::r--' });
    expect(snapshot.get(BACKSLASH_NAME)?.acl).toBe('user:65534:r--,mask::r--');
    expect(snapshot.get('xattr.txt')?.xattrs).toEqual({ 'user.test': hexValue });
    expect(snapshot.get(NEWLINE_NAME)?.xattrs).toEqual({ 'user.test': hexValue });
    expect(snapshot.get(UNICODE_NAME)).toMatchObject({
      type: 'file',
      size: 8,
      mtime: FIXED_TIME.getTime() / 1000,
      xattrs: {},
    });
    expect(snapshot.get(UNICODE_NAME)?.acl).toBeUndefined();
    expect(snapshot.get(HOSTILE_NAME)?.sha256).toBe(
      execFileSync('sha256sum', ['--', path.join(source, HOSTILE_NAME)], {
        encoding: 'utf8',
      }).split(' ')[0],
    );
    expect(snapshot.get('.hidden')).toMatchObject({ type: 'file', mode: 0o600 });
    expect(snapshot.get('link')).toMatchObject({ type: 'symlink', target: 'docs/nested/deep.txt' });
    expect(snapshot.get('hard-a')?.hardLinkGroup).toBe('docs/hard-b');
    expect(snapshot.get('docs/hard-b')?.hardLinkGroup).toBe('docs/hard-b');
    expect(snapshot.get('docs/nested/deep.txt')?.hardLinkGroup).toBeUndefined();
    expect(snapshot.get('data/www.txt')).toMatchObject({ uid: 33, gid: 33 });
  });

  it('leaves excluded paths and everything below excluded dirs out', async () => {
    const exclude = (relativePath: string): boolean =>
      relativePath === 'docs' || relativePath === '.hidden';
    const snapshot = await snapshotTree(source, { exclude });

    expect(
      [...snapshot.keys()].filter((key) => key.startsWith('docs') || key === '.hidden'),
    ).toEqual([]);
    expect(snapshot.has('hard-a')).toBe(true);
    fs.rmSync(path.join(copy, 'docs'), { recursive: true });
    fs.writeFileSync(path.join(copy, '.hidden'), 'changed');
    expect(diffTrees(snapshot, await snapshotTree(copy, { exclude }))).toEqual([]);
  });
});

describe('diffTrees', () => {
  it('finds a cp -a copy equal to its source', async () => {
    expect(await diffCopy()).toEqual([]);
  });

  it('reports changed content of the same size', async () => {
    const file = path.join(copy, UNICODE_NAME);
    fs.writeFileSync(file, 'UNICODE\n');
    fs.utimesSync(file, FIXED_TIME, FIXED_TIME);
    expect(await diffCopy()).toEqual([`${UNICODE_NAME}: content differs`]);
  });

  it('reports a changed mode', async () => {
    fs.chmodSync(path.join(copy, '.hidden'), 0o644);
    expect(await diffCopy()).toEqual(['.hidden: mode 0600 != 0644']);
  });

  it('reports a changed owner', async () => {
    fs.chownSync(path.join(copy, 'data/www.txt'), 0, 0);
    expect(await diffCopy()).toEqual(['data/www.txt: owner 33:33 != 0:0']);
  });

  it('reports a changed mtime', async () => {
    const later = new Date(FIXED_TIME.getTime() + 60_000);
    fs.utimesSync(path.join(copy, 'docs/nested/deep.txt'), later, later);
    expect(await diffCopy()).toEqual([
      `docs/nested/deep.txt: mtime ${FIXED_TIME.getTime() / 1000} != ${later.getTime() / 1000}`,
    ]);
  });

  it('reports a changed xattr value on a name with a newline', async () => {
    run('setfattr', '-n', 'user.test', '-v', 'other', '--', path.join(copy, NEWLINE_NAME));
    expect(await diffCopy()).toEqual([`${NEWLINE_NAME}: xattr user.test differs`]);
  });

  it('reports a removed xattr', async () => {
    run('setfattr', '-x', 'user.test', '--', path.join(copy, 'xattr.txt'));
    expect(await diffCopy()).toEqual(['xattr.txt: xattr user.test missing']);
  });

  it('reports a changed ACL entry on a name with a backslash', async () => {
    // Same mask afterwards, so the mode's group bits stay the same: only the ACL differs.
    run('setfacl', '-m', 'u:nobody:---', '--', path.join(copy, BACKSLASH_NAME));
    expect(await diffCopy()).toEqual([
      `${BACKSLASH_NAME}: acl differs (user:65534:r--,mask::r-- != user:65534:---,mask::r--)`,
    ]);
  });

  it('reports a removed ACL', async () => {
    run('setfacl', '-b', '--', path.join(copy, 'acl.txt'));
    expect(await diffCopy()).toEqual(['acl.txt: acl differs (user:65534:r--,mask::r-- != none)']);
  });

  it('reports a hard link broken into two copies', async () => {
    fs.rmSync(path.join(copy, 'docs/hard-b'));
    run('cp', '-a', '--', path.join(copy, 'hard-a'), path.join(copy, 'docs/hard-b'));
    expect(await diffCopy()).toEqual([
      'docs/hard-b: hard link docs/hard-b != none',
      'hard-a: hard link docs/hard-b != none',
    ]);
  });

  it('reports a missing file', async () => {
    fs.rmSync(path.join(copy, HOSTILE_NAME));
    expect(await diffCopy()).toEqual([`missing: ${HOSTILE_NAME}`]);
  });

  it('reports an extra file', async () => {
    fs.writeFileSync(path.join(copy, 'empty/extra.txt'), '');
    expect(await diffCopy()).toEqual(['extra: empty/extra.txt']);
  });

  it('reports a changed symlink target', async () => {
    fs.rmSync(path.join(copy, 'link'));
    fs.symlinkSync('hard-a', path.join(copy, 'link'));
    expect(await diffCopy()).toEqual(['link: symlink target "docs/nested/deep.txt" != "hard-a"']);
  });
});
