// Bundles the two entry points with ncc into self-contained ESM files that run on Node 24
// with no node_modules: the actions' steps (one bundle, dist/action, which each step's
// one-line shim in dist/<step>/index.js loads) and the command line (dist/cli).
// Usage: node script/build.ts [outDir]   (default: dist)
import { spawn } from 'node:child_process';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const target = resolve(root, process.argv[2] ?? 'dist');
// Built aside and moved into place at the end: a failed build leaves the old bundle intact.
const outDir = mkdtempSync(join(dirname(target), '.dist-build-'));
chmodSync(outDir, 0o755);
const ncc = join(root, 'node_modules', '.bin', 'ncc');
const entries = ['action', 'cli'] as const;
/** The steps action.yml and restore/action.yml name: each a shim that loads the action bundle. */
const steps = ['main', 'post', 'restore-main', 'restore-post'] as const;

// The bundles are independent: build them side by side.
const results = await Promise.all(
  entries.map(
    (entry) =>
      new Promise<number | null>((done) => {
        const args = [
          'build',
          join('src', `${entry}.ts`),
          '-o',
          join(outDir, entry),
          '--license',
          'licenses.txt',
          '--quiet',
        ];
        spawn(ncc, args, { cwd: root, stdio: 'inherit' }).once('close', done);
      }),
  ),
);
const failed = entries.filter((_, i) => results[i] !== 0);
if (failed.length > 0) {
  rmSync(outDir, { recursive: true, force: true });
  console.error(`ncc failed to bundle ${failed.map((e) => `src/${e}.ts`).join(', ')}`);
  process.exit(1);
}
// One package.json for the whole folder marks every bundle as ESM.
for (const entry of entries) rmSync(join(outDir, entry, 'package.json'), { force: true });
writeFileSync(join(outDir, 'package.json'), '{ "type": "module" }\n');
for (const step of steps) {
  mkdirSync(join(outDir, step));
  writeFileSync(
    join(outDir, step, 'index.js'),
    `// The ${step} step: the actions' bundle, which takes the step from this file's directory.\nimport '../action/index.js';\n`,
  );
}

const cli = join(outDir, 'cli', 'index.js');
const source = readFileSync(cli, 'utf8');
if (!source.startsWith('#!')) writeFileSync(cli, `#!/usr/bin/env node\n${source}`);
chmodSync(cli, 0o755);

rmSync(target, { recursive: true, force: true });
renameSync(outDir, target);
