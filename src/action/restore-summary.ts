// The restore's job summary: what was restored, from which artifact and run, onto which
// host, the version, what was checked, where the previous state is kept and how to remove
// it, and how long it took. Pure: returns Markdown.
import type { DownloadedBackup } from '../destination/artifact.ts';
import { formatSeconds } from '../report.ts';
import type { RestoreResult } from '../restore.ts';
import { formatBytes } from '../steps/preflight.ts';

function escape(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

export function restoreSummary(
  result: RestoreResult,
  backup: DownloadedBackup,
  seconds: number,
): string {
  const { manifest } = result;
  const product = manifest.instance.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud';
  const { artifact } = backup;
  const previous = result.previous;
  const rows: [string, string][] = [
    [
      'Backup',
      `${manifest.name} of ${manifest.source.host}, taken ${manifest.startedAt.slice(0, 19).replace('T', ' ')} UTC`,
    ],
    [
      'From',
      `artifact '${artifact.name}' (id ${artifact.id}, ${formatBytes(artifact.size)}) of ${backup.from}${backup.digestChecked ? `, digest \`sha256:${artifact.digest}\` checked` : ', no digest recorded'}`,
    ],
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
