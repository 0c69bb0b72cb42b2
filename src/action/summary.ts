// The job summary: what was backed up, how big, its checksums, the maintenance window and
// where the artifact is. Pure: returns Markdown.
import type { BackupResult } from '../backup.ts';
import type { ResticBackupResult } from '../backup-restic.ts';
import type { StoredArtifact } from '../destination/artifact.ts';
import { describeEncryption, leftOutOf } from '../manifest.ts';
import { formatSeconds } from '../report.ts';
import { restoreTestLine } from '../steps/restore-test.ts';
import { formatBytes } from '../steps/preflight.ts';

function escape(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

export function jobSummary(
  result: BackupResult,
  artifact: StoredArtifact | undefined,
  retentionDays: number,
  now: Date,
): string {
  const { manifest } = result;
  const product = manifest.instance.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud';
  const db = manifest.database;
  const window = manifest.maintenance;
  const maintenance = !window.managed
    ? 'not managed (maintenance-mode: false)'
    : window.switchedByUs
      ? `on for ${formatSeconds(window.seconds)} (${window.enabledAt?.slice(11, 19)}–${window.restoredAt?.slice(11, 19)} UTC), then off again`
      : 'was on before the backup, left on';
  const installParts = manifest.files.installPaths
    .map((p) => (p === '.' ? 'the whole installation' : p))
    .join(', ');
  let where = `kept on the runner in \`${result.directory}\` (upload: false)`;
  if (artifact) {
    const expiry =
      retentionDays > 0
        ? `expires ${new Date(now.getTime() + retentionDays * 86_400_000).toISOString().slice(0, 10)}`
        : "kept for the repository's default retention";
    where = `[${escape(artifact.name)}](${artifact.url}), ${formatBytes(artifact.size)}, digest \`sha256:${artifact.digest}\`, ${expiry}`;
  }
  const rows: [string, string][] = [
    [
      'Instance',
      `${product} ${manifest.instance.version} (${manifest.instance.instanceId}) on ${manifest.source.host}`,
    ],
    ['Install type', `${manifest.source.installType} (${manifest.source.installTypeReason})`],
    ['Database', `${db.type} \`${db.name}\`, dumped with ${db.dumpTool} (${db.dumpToolVersion})`],
    [
      'Included',
      `${installParts} from \`${manifest.source.installDir}\`; data directory \`${manifest.source.dataDir}\`${manifest.files.absolutePaths.length ? `; ${manifest.files.absolutePaths.join(', ')}` : ''}`,
    ],
    [
      'Left out',
      leftOutOf(manifest)
        .map((item) => (item.why ? `${item.what} (${item.why})` : item.what))
        .join('; ') || 'nothing',
    ],
    ['Files', `${manifest.files.fileCount} files, ${formatBytes(manifest.files.bytes)}`],
    ...(manifest.encryption
      ? [['Server-side encryption', describeEncryption(manifest.encryption)] as [string, string]]
      : []),
    ['Maintenance mode', maintenance],
    [
      'Restore test',
      manifest.restoreTest
        ? restoreTestLine(manifest.restoreTest)
        : 'not run (restore-test: false)',
    ],
    ['Backup', where],
    ['Took', formatSeconds(manifest.durationSeconds)],
  ];
  const lines = [
    `## ${product} backup ${escape(manifest.name)}`,
    '',
    '| | |',
    '| --- | --- |',
    ...rows.map(([key, value]) => `| ${key} | ${escape(value)} |`),
    '',
    '| File | Size | SHA-256 |',
    '| --- | --- | --- |',
    ...manifest.archives.map(
      (a) => `| ${escape(a.name)} | ${formatBytes(a.size)} | \`${a.sha256}\` |`,
    ),
    '',
    '> Artifacts are not encrypted: anyone with read access to this repository’s workflow runs can download this backup.',
    '',
  ];
  return lines.join('\n');
}

/** The job summary of a backup into a restic repository. Pure: returns Markdown. */
export function resticJobSummary(result: ResticBackupResult): string {
  const { manifest } = result;
  const product = manifest.instance.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud';
  const rows: [string, string][] = [
    ['Instance', `${product} ${manifest.instance.version} (${manifest.instance.instanceId})`],
    ['Repository', manifest.repository.display],
    ['Backup', `${result.name}, manifest snapshot \`${result.snapshot}\``],
    [
      'Snapshots',
      `installation \`${manifest.snapshots.install}\`, data \`${manifest.snapshots.files}\`, database \`${manifest.snapshots.database}\` (${manifest.database.dumpFile})`,
    ],
    [
      'Database',
      `${manifest.database.type} '${manifest.database.name}', ${formatBytes(manifest.database.dumpBytes)} dumped with ${manifest.database.dumpTool} ${manifest.database.dumpToolVersion}`,
    ],
    [
      'Files',
      `${formatBytes(manifest.files.bytes)}; ${formatBytes(manifest.dataAdded)} added to the repository`,
    ],
    [
      'Maintenance mode',
      !manifest.maintenance.managed
        ? 'not managed (maintenance-mode: false)'
        : manifest.maintenance.switchedByUs
          ? `on for ${formatSeconds(manifest.maintenance.seconds)}, then off again`
          : 'was on before the backup, left on',
    ],
    ...(result.retention
      ? ([
          [
            'Retention',
            `kept ${result.retention.kept.length}, removed ${result.retention.removed.length}`,
          ],
        ] as [string, string][])
      : []),
    ...(result.checked ? ([['Check', `${result.checked}: no errors`]] as [string, string][]) : []),
  ];
  return [
    `## ownCloud backup into restic`,
    '',
    '| | |',
    '|---|---|',
    ...rows.map(([key, value]) => `| ${key} | ${escape(value)} |`),
    '',
  ].join('\n');
}
