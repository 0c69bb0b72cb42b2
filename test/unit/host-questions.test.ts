// The questions a backup asks the host, each answering several things in one command: what
// paths are (as `test -d` / `test -e` would say), which programs are there, who owns the
// server code. Run here against this machine's real programs and files, counting commands.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { sqlite } from '../../src/database/sqlite.ts';
import type { Host } from '../../src/host/host.ts';
import { LocalHost } from '../../src/host/local.ts';
import { HostPaths, inspectPaths } from '../../src/steps/host-paths.ts';
import { parsePackageOwners } from '../../src/steps/installation.ts';
import { findTools } from '../../src/steps/preflight.ts';

const dir = mkdtempSync(join(tmpdir(), 'host-questions-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** This machine as the host, counting the commands run there. */
function countingHost(): Host & { commands: string[][] } {
  const local = new LocalHost();
  const commands: string[][] = [];
  return Object.assign(Object.create(local) as LocalHost, {
    commands,
    run: (argv: readonly string[], options?: Parameters<Host['run']>[1]) => {
      commands.push([...argv]);
      return local.run(argv, options);
    },
  });
}

/** What `test OP path` says, asked of the real test program. */
function shellTest(op: '-d' | '-e', path: string): boolean {
  try {
    execFileSync('test', [op, path]);
    return true;
  } catch {
    return false;
  }
}

describe('what paths are on the host, asked in one command', () => {
  mkdirSync(join(dir, 'a dir'));
  writeFileSync(join(dir, 'a file'), 'x');
  symlinkSync(join(dir, 'a dir'), join(dir, 'link to dir'));
  symlinkSync(join(dir, 'a file'), join(dir, 'link to file'));
  symlinkSync(join(dir, 'nowhere'), join(dir, 'dangling'));
  const names = [
    'a dir',
    'a file',
    'link to dir',
    'link to file',
    'dangling',
    'missing',
    "it's\nodd",
  ];
  writeFileSync(join(dir, "it's\nodd"), '');
  const paths = names.map((n) => join(dir, n));

  it('answers as test -d and test -e do, with links and real paths, for names with quotes and line breaks', async () => {
    const host = countingHost();
    const known = await HostPaths.inspect(host, host.account, paths);
    for (const path of paths) {
      expect(await known.isDir(path), path).toBe(shellTest('-d', path));
      expect(await known.exists(path), path).toBe(shellTest('-e', path));
    }
    const facts = await known.factsOf(paths);
    expect(facts.map((f) => f.kind)).toEqual([
      'dir',
      'file',
      'dir',
      'file-link',
      'missing',
      'missing',
      'file',
    ]);
    expect(facts.map((f) => f.link)).toEqual([false, false, true, true, true, false, false]);
    expect(facts[2]!.real).toBe(join(dir, 'a dir'));
    expect(facts[3]!.real).toBe(join(dir, 'a file'));
    expect(facts[6]!.real).toBe(join(dir, "it's\nodd"));
    // All of it from one command.
    expect(host.commands).toHaveLength(1);
  });

  it('asks again, once, only about paths it was not asked about', async () => {
    const host = countingHost();
    const known = await HostPaths.inspect(host, host.account, paths.slice(0, 2));
    expect(await known.isDir(paths[0]!)).toBe(true);
    expect(host.commands).toHaveLength(1);
    expect(await known.factsOf(paths)).toEqual(await inspectPaths(host, host.account, paths));
    // The factsOf call asked about the other five in one command (the comparison made a third).
    expect(host.commands).toHaveLength(3);
    expect(host.commands[1]!.slice(-5)).toEqual(paths.slice(2));
  });
});

describe('the programs on the host, asked in one command', () => {
  it('finds the first dump program there is, with its version, and names the missing programs', async () => {
    const host = countingHost();
    const engine = { ...sqlite, programs: ['no-such-dump-program', 'sqlite3'] };
    const found = await findTools(host, engine, ['sh', 'no-such-program', 'tar', 'no such either']);
    expect(found.tool.program).toBe('sqlite3');
    // The first line of its --version, without the source id.
    const version = execFileSync('sqlite3', ['--version'], { encoding: 'utf8' }).split('\n')[0]!;
    expect(version).toMatch(/ [0-9a-f]{40,}/);
    expect(found.tool.version).toBe(version.replace(/\s+[0-9a-f]{40,}\S*$/, ''));
    expect(found.tool.version).toMatch(/^3\.\d+\.\d+ /);
    expect(found.missing).toEqual(['no-such-program', 'no such either']);
    expect(host.commands).toHaveLength(1);
  });

  it('says which dump programs it looked for when there is none', async () => {
    const engine = { ...sqlite, programs: ['no-such-dump', 'nor-this-one'] };
    await expect(findTools(new LocalHost(), engine, ['sh'])).rejects.toThrow(
      /has no no-such-dump or nor-this-one to dump the sqlite database: install it there\.$/,
    );
  });
});

describe("the package managers' owners of the server code, in one answer", () => {
  it('reads each manager found, dpkg first, skipping diversion lines', () => {
    const owners = parsePackageOwners(
      [
        '#rpm',
        'owncloud-server: /var/www/owncloud/occ',
        '#dpkg',
        'diversion by foo from: /var/www/owncloud/version.php',
        'owncloud-complete-files: /var/www/owncloud/version.php',
        '',
      ].join('\n'),
    );
    expect([...owners.keys()]).toEqual(['dpkg', 'rpm']);
    expect(Object.fromEntries(owners.get('dpkg')!)).toEqual({
      '/var/www/owncloud/version.php': 'owncloud-complete-files',
    });
    expect(Object.fromEntries(owners.get('rpm')!)).toEqual({
      '/var/www/owncloud/occ': 'owncloud-server',
    });
  });

  it('has no manager when the host has neither', () => {
    expect(parsePackageOwners('').size).toBe(0);
  });
});
