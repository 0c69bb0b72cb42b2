import { describe, expect, it } from 'vitest';
import { actionSettings } from '../../src/action/inputs.ts';
import { jobSummary } from '../../src/action/summary.ts';
import type { BackupResult } from '../../src/backup.ts';
import type { Manifest } from '../../src/manifest.ts';

const started = new Date('2026-11-26T02:17:00Z');

describe('actionSettings', () => {
  it('defaults: a dated artifact name, the repository retention, upload on, backups under RUNNER_TEMP', () => {
    const settings = actionSettings({}, {}, '/runner/_temp', started);
    expect(settings).toMatchObject({
      artifactName: 'owncloud-backup-20261126-021700',
      retentionDays: 0,
      upload: true,
    });
    expect(settings.plan.backupDir).toBe('/runner/_temp/owncloud-backup');
  });

  it('takes a name with spaces and unicode, 1-90 days, and upload false', () => {
    expect(
      actionSettings(
        {},
        { 'artifact-name': 'nightly ünï', 'retention-days': '90', upload: 'false' },
        '/t',
        started,
      ),
    ).toMatchObject({
      artifactName: 'nightly ünï',
      retentionDays: 90,
      upload: false,
    });
  });

  it.each([
    [
      { 'artifact-name': 'a/b' },
      "Invalid input 'artifact-name': 'a/b' contains a character artifacts cannot have.",
    ],
    [{ 'artifact-name': 'a\nb' }, "Invalid input 'artifact-name': 'a b' contains a character"],
    [
      { 'retention-days': '0.5' },
      "Invalid input 'retention-days': '0.5' is not a number of days from 1 to 90",
    ],
    [
      { upload: 'yes please' },
      "Invalid input 'upload': 'yes please' is not a boolean. Expected true or false.",
    ],
  ])('refuses %j', (action, message) => {
    expect(() => actionSettings({}, action, '/t', started)).toThrow(message);
  });
});

describe('jobSummary', () => {
  const manifest = {
    name: 'owncloud-backup-20261126-021700',
    instance: { product: 'owncloud', version: '10.15.0.2', instanceId: 'oc1', theme: 'mytheme' },
    source: {
      host: 'root@cloud.example.com:22',
      installDir: '/var/www/owncloud',
      dataDir: '/srv/data',
    },
    database: {
      type: 'mysql',
      name: 'owncloud',
      dumpTool: 'mysqldump',
      dumpToolVersion: 'Ver 10.19',
    },
    files: {
      installPaths: ['config', 'themes/mytheme'],
      absolutePaths: [],
      excludePatterns: ['*/thumbnails/'],
      leftOut: [],
      fileCount: 20000,
      bytes: 1024 ** 3,
    },
    maintenance: {
      managed: true,
      switchedByUs: true,
      priorState: false,
      seconds: 2.5,
      enabledAt: '2026-11-26T02:17:03.000Z',
      restoredAt: '2026-11-26T02:17:05.500Z',
    },
    archives: [
      {
        name: 'owncloud-files_20261126.tar.zst',
        role: 'files',
        size: 2048,
        sha256: 'a'.repeat(64),
        compression: 'zstd',
      },
    ],
    durationSeconds: 42,
  } as unknown as Manifest;
  const result = { directory: '/t/x', manifest } as BackupResult;

  it('tabulates the instance, what was included, the window, checksums and the artifact with its expiry', () => {
    const text = jobSummary(
      result,
      {
        name: 'nightly',
        id: 7,
        size: 4096,
        digest: 'b'.repeat(64),
        url: 'https://github.com/o/r/actions/runs/1/artifacts/7',
      },
      14,
      started,
    );
    expect(text).toContain('| Instance | ownCloud 10.15.0.2 (oc1) on root@cloud.example.com:22 |');
    expect(text).toContain(
      '| Included | config, themes/mytheme from `/var/www/owncloud`; data directory `/srv/data` |',
    );
    expect(text).toContain('| Left out | `*/thumbnails/` |');
    expect(text).toContain(
      '| Maintenance mode | on for 2.5 s (02:17:03–02:17:05 UTC), then off again |',
    );
    expect(text).toContain(
      '[nightly](https://github.com/o/r/actions/runs/1/artifacts/7), 4.0 KiB, digest `sha256:' +
        'b'.repeat(64) +
        '`, expires 2026-12-10',
    );
    expect(text).toContain(`| owncloud-files_20261126.tar.zst | 2.0 KiB | \`${'a'.repeat(64)}\` |`);
  });

  it('says what the restore test found, or that it did not run', () => {
    expect(jobSummary(result, undefined, 0, started)).toContain(
      '| Restore test | not run (restore-test: false) |',
    );
    const tested = {
      ...result,
      manifest: {
        ...manifest,
        restoreTest: {
          result: 'skipped',
          reason: 'no postgres on the runner',
          tables: 0,
          rows: 0,
          users: 0,
          seconds: 0,
        },
      },
    } as BackupResult;
    expect(jobSummary(tested, undefined, 0, started)).toContain(
      '| Restore test | restore test skipped: no postgres on the runner |',
    );
  });

  it('says where the backup stayed when it was not uploaded', () => {
    expect(jobSummary(result, undefined, 0, started)).toContain(
      'kept on the runner in `/t/x` (upload: false)',
    );
  });
});
