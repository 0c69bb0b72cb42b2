// The restore's job summary: what was restored, from which artifact and run, onto which
// host, the version, what was checked, where the previous state is kept and how to remove
// it, and how long it took. Pure: returns Markdown.
import type { DownloadedBackup } from '../destination/artifact.ts';
import { formatSeconds } from '../report.ts';
import type { Manifest } from '../manifest.ts';
import type { RestoreResult } from '../restore.ts';
import type { PathRestoreResult } from '../restore-paths.ts';
import { formatBytes } from '../steps/preflight.ts';

function escape(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

/** Which backup, and which artifact of which run it came from. */
function sourceRows(
  manifest: Pick<Manifest, 'name' | 'source' | 'startedAt'>,
  backup: DownloadedBackup,
): [string, string][] {
  const { artifact } = backup;
  return [
    [
      'Backup',
      `${manifest.name} of ${manifest.source.host}, taken ${manifest.startedAt.slice(0, 19).replace('T', ' ')} UTC`,
    ],
    [
      'From',
      `artifact '${artifact.name}' (id ${artifact.id}, ${formatBytes(artifact.size)}) of ${backup.from}${backup.digestChecked ? `, digest \`sha256:${artifact.digest}\` checked` : ', no digest recorded'}`,
    ],
  ];
}

export function restoreSummary(
  result: RestoreResult,
  backup: DownloadedBackup,
  seconds: number,
): string {
  const { manifest } = result;
  const product = manifest.instance.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud';
  const previous = result.previous;
  const rows: [string, string][] = [
    ...sourceRows(manifest, backup),
    [
      'Onto',
      `${result.target} (${result.inPlace ? 'in place of the instance there' : 'a new host: no instance was there'})`,
    ],
    ['Instance', `${product} ${manifest.instance.version} (${manifest.instance.instanceId})`],
    [
      'Database',
      `${manifest.database.type} \`${manifest.database.name}\`: ${result.tablesChecked} tables, row counts as in the backup`,
    ],
    [
      'config.php',
      result.changedConfig.length
        ? `changed: ${result.changedConfig.join(', ')}`
        : 'as in the backup',
    ],
    [
      'Previous state',
      previous
        ? `kept (${formatBytes(previous.bytes)}): ${previous.paths.map((p) => `\`${p}\``).join(', ')}`
        : 'none kept (safety-copy false, discard-previous true, or nothing was there)',
    ],
    ['Took', formatSeconds(seconds)],
  ];
  const lines = [
    `## ${product} restored from ${escape(manifest.name)}`,
    '',
    '| | |',
    '| --- | --- |',
    ...rows.map(([key, value]) => `| ${key} | ${escape(value)} |`),
    '',
  ];
  if (previous)
    lines.push(
      `> The previous state stays on ${escape(result.target)} until you remove it: run \`owncloud-backup restore --cleanup\` there with the same options (or this action again with \`discard-previous: true\`), or delete the paths above once the restored instance is known to be good.`,
      '',
    );
  return lines.join('\n');
}

/** The job summary of a restore of single paths: what came back, what was skipped, and why. */
export function pathRestoreSummary(
  result: PathRestoreResult,
  backup: DownloadedBackup,
  seconds: number,
): string {
  const { manifest } = result;
  const product = manifest.instance.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud';
  const rows: [string, string][] = [
    ...sourceRows(manifest, backup),
    ['Into', `${result.target}, the running ${product} (no maintenance mode, database unchanged)`],
    [
      'Restored',
      `${result.placed.length} file${result.placed.length === 1 ? '' : 's'}${result.unchanged ? `; ${result.unchanged} already as in the backup` : ''}`,
    ],
    [
      'Skipped',
      result.skipped.length
        ? result.skipped.map((s) => `\`${s.user}/${s.path}\` (${s.reason})`).join(', ')
        : 'none',
    ],
    [
      'Scanned',
      result.scanned.length ? result.scanned.map((p) => `\`${p}\``).join(', ') : 'nothing',
    ],
    ...(result.filesOnly.length
      ? ([
          [
            'As files only',
            `${result.filesOnly.map((p) => `\`${p}\``).join(', ')} (versions and the trash bin are not scanned)`,
          ],
        ] as [string, string][])
      : []),
    ...(result.cacheRows
      ? ([
          [
            'Encryption',
            `${result.cacheRows} file cache rows hold the values recorded at backup time`,
          ],
        ] as [string, string][])
      : []),
    [
      'Replaced items',
      result.previous
        ? `${result.replaced} kept in \`${result.previous}\` (remove with \`owncloud-backup restore --cleanup\`)`
        : 'none',
    ],
    ['Took', formatSeconds(seconds)],
  ];
  const placed = result.placed
    .slice(0, 100)
    .map((p) => `- \`${p.user}/${p.from}\`${p.to !== p.from ? ` as \`${p.user}/${p.to}\`` : ''}`);
  return [
    `## ${product}: ${result.placed.length} file${result.placed.length === 1 ? '' : 's'} restored from ${escape(manifest.name)}`,
    '',
    '| | |',
    '| --- | --- |',
    ...rows.map(([key, value]) => `| ${key} | ${escape(value)} |`),
    '',
    ...(placed.length
      ? [
          ...placed,
          ...(result.placed.length > 100 ? [`- … and ${result.placed.length - 100} more`] : []),
          '',
        ]
      : []),
  ].join('\n');
}
