// The demo behind script/demo: a sample instance (ownCloud 10 layout, SQLite), backed up by
// dist/cli/index.js exactly as a user runs it, then a look inside the result.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildSampleInstance } from '../test/sample/instance.ts';

const root = mkdtempSync(join(tmpdir(), 'owncloud-backup-demo-'));
chmodSync(root, 0o755);
const sample = await buildSampleInstance({ database: { type: 'sqlite' }, root });
const backups = join(root, 'backups');
console.log(
  `Sample ownCloud ${String(sample.config.version)} built in ${sample.installDir} (data: ${sample.dataDir}, SQLite).\n`,
);

const cli = resolve(import.meta.dirname, '..', 'dist', 'cli', 'index.js');
const run = spawnSync(
  process.execPath,
  [cli, 'backup', '--owncloud-dir', sample.installDir, '--backup-dir', backups],
  {
    stdio: 'inherit',
  },
);
if (run.status !== 0) process.exit(run.status ?? 1);

const dir = join(backups, readdirSync(backups)[0]!);
console.log(`\nWhat ${dir} holds:`);
for (const name of readdirSync(dir).sort())
  console.log(`  ${String(statSync(join(dir, name)).size).padStart(9)}  ${name}`);
const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as {
  archives: { name: string; role: string }[];
};
const files = manifest.archives.find((a) => a.role === 'files')!.name;
const dump = manifest.archives.find((a) => a.role === 'database')!.name;
const listing = execFileSync('tar', ['--zstd', '-tvf', join(dir, files), '--numeric-owner'], {
  encoding: 'utf8',
})
  .trim()
  .split('\n');
console.log(`\n${files}: ${listing.length} entries, e.g.`);
for (const line of listing
  .filter((l) => /\.ocdata|config\.php|Welcome|Ünïcødé dir\/\$/.test(l))
  .slice(0, 6))
  console.log(`  ${line}`);
const sql = execFileSync('zstd', ['-dc', join(dir, dump)], { encoding: 'utf8' })
  .trim()
  .split('\n');
console.log(`\n${dump}: ${sql.length} lines of SQL, ending with '${sql.at(-1)}'`);
console.log(`\nCheck it: (cd '${dir}' && sha256sum -c SHA256SUMS)`);
console.log(`Remove the demo: rm -rf '${root}'`);
