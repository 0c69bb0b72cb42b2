// Fails when a fresh build differs from the committed dist/: users run dist/, not src/.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const committed = join(root, 'dist');
const fresh = mkdtempSync(join(tmpdir(), 'owncloud-backup-dist-'));

function listFiles(dir: string): string[] {
  const files: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) files.push(...listFiles(path));
    else files.push(path);
  }
  return files;
}

try {
  const build = spawnSync(process.execPath, [join(root, 'script', 'build.ts'), fresh], {
    cwd: root,
    stdio: 'inherit',
  });
  if (build.status !== 0) throw new Error('the build failed');
  const want = new Set(listFiles(fresh).map((f) => relative(fresh, f)));
  const have = new Set(listFiles(committed).map((f) => relative(committed, f)));
  const problems: string[] = [];
  for (const file of want) {
    if (!have.has(file)) problems.push(`missing from dist/: ${file}`);
    else if (!readFileSync(join(fresh, file)).equals(readFileSync(join(committed, file))))
      problems.push(`differs from a fresh build: dist/${file}`);
  }
  for (const file of have)
    if (!want.has(file)) problems.push(`not produced by the build: dist/${file}`);
  if (problems.length > 0) {
    console.error(
      `dist/ is not current. Run 'npm run build' and commit dist/.\n  ${problems.join('\n  ')}`,
    );
    process.exitCode = 1;
  } else {
    console.log(`dist/ is current (${want.size} files).`);
  }
} finally {
  rmSync(fresh, { recursive: true, force: true });
}
