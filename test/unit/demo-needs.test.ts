// script/demo installs only what the demo runs: PHP (cli, SQLite), sqlite3, rsync, zstd, tar,
// acl and attr (the sample instance carries an ACL and an xattr), and Node 24 alone; and
// the demo's code loads no npm package (the bundle it runs is self-contained).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..', '..');
const NODE_VERSION = (
  JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    devDependencies: Record<string, string>;
  }
).devDependencies.node;

function listed(args: string[]): { debian: string[]; npm: string } {
  const out = execFileSync(join(ROOT, 'script', 'bootstrap'), [...args, '--list'], {
    encoding: 'utf8',
  });
  return {
    debian: /^Debian packages: (.*)$/m.exec(out)![1]!.split(' ').sort(),
    npm: /^npm packages: (.*)$/m.exec(out)![1]!,
  };
}

/** Every module specifier the files load at run time (type-only imports are erased). */
function runtimeImports(entry: string): { files: string[]; packages: string[] } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const pending = [entry];
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    if (files.has(file)) continue;
    files.add(file);
    const source = readFileSync(file, 'utf8');
    for (const match of source.matchAll(
      /^(?:import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?'([^']+)';/gm,
    )) {
      if (match[1]) continue;
      const specifier = match[2]!;
      if (specifier.startsWith('.')) pending.push(resolve(dirname(file), specifier));
      else packages.add(specifier);
    }
  }
  return { files: [...files].map((f) => relative(ROOT, f)).sort(), packages: [...packages].sort() };
}

describe('what the demo needs', () => {
  it('script/bootstrap --demo installs exactly the tools the demo runs and Node 24', () => {
    expect(listed(['--demo'])).toEqual({
      debian: ['acl', 'attr', 'php-cli', 'php-sqlite3', 'rsync', 'sqlite3', 'tar', 'zstd'],
      npm: `node@${NODE_VERSION}`,
    });
    // The full bootstrap (tests, development) is a superset: servers, clients, sshd, npm ci.
    const full = listed([]);
    expect(full.debian).toEqual(expect.arrayContaining(listed(['--demo']).debian));
    expect(full.debian).toEqual(expect.arrayContaining(['mariadb-server', 'postgresql']));
    expect(full.npm).toBe('npm ci');
  });

  it("the demo's code loads only Node's own modules", () => {
    const { files, packages } = runtimeImports(join(ROOT, 'script', 'demo.ts'));
    expect(files).toContain('test/sample/instance.ts');
    expect(packages.length).toBeGreaterThan(3);
    expect(packages.filter((p) => !p.startsWith('node:'))).toEqual([]);
  });
});
