// The README's first command, script/demo, as a user runs it: it bootstraps what the demo
// needs (here all of it is installed already, so it installs nothing), builds a sample
// instance, backs it up with the bundle and prints a readable summary.
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

describe('the demo', () => {
  it('backs up a sample instance and says where the backup went and what it holds', () => {
    const run = spawnSync(join(import.meta.dirname, '..', '..', 'script', 'demo'), [], {
      encoding: 'utf8',
    });
    const root = /Remove the demo: rm -rf '([^']+)'/.exec(run.stdout)?.[1];
    try {
      expect(run.status, run.stderr).toBe(0);
      expect(run.stderr).not.toContain('Installing');
      expect(run.stdout).toMatch(/^Backup complete: \/.*\/backups\/owncloud-backup-\d{8}-\d{6}$/m);
      expect(run.stdout).toMatch(
        /^ {2}owncloud-files_\d{8}\.tar\.zst +[\d.]+ KiB {2}sha256 [0-9a-f]{64}$/m,
      );
      expect(run.stdout).toMatch(/lines of SQL, ending with 'COMMIT;'/);
      const dir = /Check it: \(cd '([^']+)'/.exec(run.stdout)![1]!;
      expect(
        execFileSync('sha256sum', ['-c', 'SHA256SUMS'], { cwd: dir, encoding: 'utf8' }),
      ).toMatch(
        /owncloud-files_\d+\.tar\.zst: OK\nowncloud-files-delta_\d+\.tar\.zst: OK\nowncloud-dbbackup_\d+\.bak\.zst: OK/,
      );
    } finally {
      if (root) rmSync(root, { recursive: true, force: true });
    }
  });
});
