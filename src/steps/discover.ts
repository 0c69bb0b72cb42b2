// Discovery: what the instance is, read from its own config.php with PHP on the host (the
// faithful way: config.php is PHP, and every ownCloud host has PHP). Like ownCloud, it
// merges config/*.config.php over config.php.
import { posix } from 'node:path';
import { BackupError, InputError, LinkError } from '../errors.ts';
import { asUser, type Host } from '../host/host.ts';
import { stderrTail, type ProcessResult } from '../host/process.ts';
import {
  CONFIG_KEYS,
  parseAppsPaths,
  invalidConfigValue,
  productOf,
  resolveDatabase,
  type AppsPath,
  type ConfigValues,
  type DatabaseConnection,
  type Product,
} from '../instance.ts';
import type { Secrets } from '../secrets.ts';
import { inspectPaths } from './host-paths.ts';
import type { InstancePlan } from '../settings.ts';

export interface Instance {
  product: Product;
  version: string;
  instanceId: string;
  /** The active theme's name ('' for none). */
  theme: string;
  installDir: string;
  configPath: string;
  /** Owner of config.php: who runs occ (unless occ-user says otherwise). */
  owner: string;
  dataDir: string;
  /** Maintenance mode as config.php says when discovered. */
  maintenance: boolean;
  database: DatabaseConnection;
  /** config.php's `apps_paths` (empty when it has none: then apps/ is the only one). */
  appsPaths: AppsPath[];
}

// PHP's own messages about config.php quote its text (a syntax error names the token it
// choked on, which may be part of the password), so PHP prints none (display_errors=0) and
// the script reports a failure as JSON naming only the kind, file and line.
const READ_CONFIG_BODY = `
error_reporting(E_ALL & ~E_DEPRECATED & ~E_NOTICE);
$done = false;
$fail = function ($kind, $file, $line = 0, $class = '') use (&$done) {
  $done = true;
  echo json_encode(['failure' => ['kind' => $kind, 'file' => $file, 'line' => $line, 'class' => $class]]);
  exit(3);
};
register_shutdown_function(function () use (&$done, $fail) {
  $error = error_get_last();
  if (!$done && $error !== null && in_array($error['type'], [E_ERROR, E_PARSE, E_CORE_ERROR, E_COMPILE_ERROR], true)) { while (ob_get_level() > 0) ob_end_clean(); $fail('fatal', $error['file'], $error['line']); }
});
$merged = [];
$files = array_merge([$dir . '/config.php'], glob($dir . '/*.config.php') ?: []);
foreach ($files as $file) {
  if (!is_readable($file)) $fail('unreadable', $file);
  $CONFIG = null;
  ob_start();
  try {
    $ok = include $file;
  } catch (ParseError $e) {
    ob_end_clean();
    $fail('syntax', $e->getFile(), $e->getLine());
  } catch (Throwable $e) {
    ob_end_clean();
    $fail('error', $e->getFile(), $e->getLine(), get_class($e));
  }
  ob_end_clean();
  if ($ok === false) $fail('unreadable', $file);
  if (!is_array($CONFIG)) $fail('no-config', $file);
  $merged = array_merge($merged, $CONFIG);
}
echo json_encode(array_intersect_key($merged, array_flip($keys)));
$done = true;
`;

/** Reads the config files of a directory on the host: argv 1 the config dir, argv 2 the keys. */
const READ_CONFIG = `$dir = $argv[1]; $keys = json_decode($argv[2], true);\n${READ_CONFIG_BODY}`;

/**
 * Reads config files given on stdin (JSON: files by name, keys), e.g. a backup's, in a
 * private directory that is removed at the end: the password in them never reaches argv.
 */
const READ_GIVEN_CONFIG = `
$given = json_decode(stream_get_contents(STDIN), true);
$keys = $given['keys'];
$dir = sys_get_temp_dir() . '/owncloud-backup-config-' . bin2hex(random_bytes(8));
umask(077);
if (!mkdir($dir, 0700)) exit(4);
register_shutdown_function(function () use ($dir) {
  foreach (glob($dir . '/*') ?: [] as $file) unlink($file);
  rmdir($dir);
});
foreach ($given['files'] as $name => $text) {
  if (basename($name) !== $name || $name === '' || $name[0] === '.') exit(4);
  file_put_contents($dir . '/' . $name, $text);
}
${READ_CONFIG_BODY}`;

/**
 * The message for the reading script's own failure report (exit 3), built from the kind,
 * file and line only, never from PHP's text; undefined when stdout is not such a report.
 */
export function configReadFailure(stdout: string, owner: string): string | undefined {
  let report: unknown;
  try {
    report = (JSON.parse(stdout) as { failure?: unknown }).failure;
  } catch {
    return undefined;
  }
  if (typeof report !== 'object' || report === null) return undefined;
  const { kind, file, line, class: errorClass } = report as Record<string, unknown>;
  const where = typeof file === 'string' ? file : 'config.php';
  const onLine = typeof line === 'number' && line > 0 ? ` on line ${line}` : '';
  switch (kind) {
    case 'syntax':
      return `${where} has a PHP syntax error${onLine}: fix it (php -l ${where} shows where).`;
    case 'error':
      return `${where} stops with a PHP ${typeof errorClass === 'string' && /^[\w\\]+$/.test(errorClass) ? errorClass : 'error'}${onLine} when loaded.`;
    case 'fatal':
      return `${where} stops PHP with a fatal error${onLine} when loaded.`;
    case 'unreadable':
      return `${where} cannot be read by ${owner} (who runs occ): check its owner and mode.`;
    case 'no-config':
      return `${where} does not define a $CONFIG array: is it an ownCloud config file?`;
    default:
      return undefined;
  }
}

/** Whether a path exists, as seen by the instance's owner (who can see into its data dir). */
export async function existsOnHost(
  host: Host,
  owner: string,
  test: '-d' | '-f' | '-e',
  path: string,
): Promise<boolean> {
  const result = await host.run(asUser(host.account, owner, ['test', test, path]));
  const transport = host.transportFailure(result);
  if (transport) throw new LinkError(transport);
  return result.exitCode === 0;
}

export async function discoverInstance(
  host: Host,
  plan: InstancePlan,
  secrets: Secrets,
): Promise<Instance> {
  const installDir = plan.owncloudDir;
  const configDir = `${installDir}/config`;
  const configPath = `${configDir}/config.php`;

  const stat = await host.run(['stat', '-c', '%U', '--', configPath]);
  if (stat.exitCode !== 0) {
    const transport = host.transportFailure(stat);
    if (transport) throw new LinkError(transport);
    if (!(await existsOnHost(host, host.account, '-d', installDir)))
      throw new InputError(`owncloud-dir '${installDir}' does not exist on ${host.label}.`);
    throw new InputError(
      `owncloud-dir '${installDir}' has no config/config.php on ${host.label}: is it an ownCloud installation?`,
    );
  }
  const configOwner = stat.stdout.trim();
  const owner = plan.occUser ?? configOwner;
  // Everything below runs as the owner; an SSH user that is someone else needs sudo for it.
  if (host.account !== 'root' && host.account !== owner) await requirePasswordlessSudo(host, owner);

  const read = await host.run(
    configReader(host, owner, READ_CONFIG, [configDir, JSON.stringify(CONFIG_KEYS)]),
  );
  const config = parseConfigRead(host, read, owner, configPath);
  // A secret from the moment it is known.
  secrets.add(typeof config.dbpassword === 'string' ? config.dbpassword : undefined);
  const invalid = invalidConfigValue(config);
  if (invalid) throw new InputError(invalid);
  if (config.installed === false)
    throw new InputError(
      `${configPath} says the instance is not installed (installed => false): nothing to back up.`,
    );

  // config.php's value may carry a trailing slash or doubled ones: one spelling from here on.
  const dataDir = posix
    .normalize(
      plan.dataDir ??
        (typeof config.datadirectory === 'string' && config.datadirectory
          ? config.datadirectory
          : `${installDir}/data`),
    )
    .replace(/(.)\/+$/, '$1');
  // The markers and the directory itself, in one question to the host.
  const [ocdata, ncdata, dir] = await inspectPaths(host, owner, [
    `${dataDir}/.ocdata`,
    `${dataDir}/.ncdata`,
    dataDir,
  ]);
  const markers = { ocdata: ocdata!.kind !== 'missing', ncdata: ncdata!.kind !== 'missing' };
  if (!markers.ocdata && !markers.ncdata) {
    const where = plan.dataDir ? 'data-dir' : "config.php's datadirectory";
    if (dir!.kind !== 'dir')
      throw new InputError(
        `The data directory '${dataDir}' (${where}) does not exist on ${host.label}.`,
      );
    throw new InputError(
      `The data directory '${dataDir}' (${where}) has neither .ocdata (ownCloud) nor .ncdata (Nextcloud): it is not an ownCloud data directory.`,
    );
  }

  const version = typeof config.version === 'string' ? config.version : '';
  const database = resolveDatabase(config, plan.database, dataDir);
  secrets.add(database.password);
  return {
    product: productOf(markers, version),
    version,
    instanceId: typeof config.instanceid === 'string' ? config.instanceid : '',
    theme: typeof config.theme === 'string' ? config.theme : '',
    installDir,
    configPath,
    owner,
    dataDir,
    maintenance: config.maintenance === true,
    database,
    appsPaths: parseAppsPaths(config.apps_paths, installDir),
  };
}

/**
 * The values of config files that are not on the host yet (a backup's config/), read there
 * with PHP as the given user, exactly as ownCloud would read them.
 */
export async function readGivenConfig(
  host: Host,
  user: string,
  files: Record<string, string>,
  what: string,
): Promise<ConfigValues> {
  const read = await host.run(configReader(host, user, READ_GIVEN_CONFIG), {
    input: JSON.stringify({ files, keys: CONFIG_KEYS }),
  });
  return parseConfigRead(host, read, user, what);
}

/** PHP on the host running a config reading script as the given user, printing no error text. */
function configReader(host: Host, user: string, script: string, args: string[] = []): string[] {
  return asUser(host.account, user, [
    'php',
    '-d',
    'display_errors=0',
    '-d',
    'log_errors=0',
    '-r',
    script,
    ...(args.length > 0 ? ['--', ...args] : []),
  ]);
}

function parseConfigRead(
  host: Host,
  read: ProcessResult,
  owner: string,
  configPath: string,
): ConfigValues {
  if (read.exitCode !== 0) {
    const transport = host.transportFailure(read);
    if (transport) throw new LinkError(transport);
    const failure = configReadFailure(read.stdout, owner);
    if (failure) throw new BackupError(failure);
    // Not PHP's words (it prints none): the shell's or sudo's, e.g. php missing.
    throw new BackupError(
      `Could not read ${configPath} with PHP on ${host.label}: ${stderrTail(read.stderr) || `php exited with ${read.exitCode}`}`,
    );
  }
  try {
    const parsed: unknown = JSON.parse(read.stdout);
    // PHP encodes an empty array as [] rather than {}.
    return (Array.isArray(parsed) ? {} : parsed) as ConfigValues;
  } catch {
    throw new BackupError(
      `PHP printed something other than the configuration when reading ${configPath}.`,
    );
  }
}

/**
 * An SSH user that is neither root nor the instance's owner runs occ (as the owner) and
 * tar (to read every file) through sudo, which must not ask for a password.
 */
export async function requirePasswordlessSudo(host: Host, owner: string): Promise<void> {
  const result = await host.run(['sudo', '-n', 'true']);
  if (result.exitCode !== 0)
    throw new BackupError(
      `The SSH user ${host.account} on ${host.label} is neither root nor ${owner} and cannot use sudo without a password (${stderrTail(result.stderr) || 'sudo -n failed'}): connect as root or ${owner}, or allow it passwordless sudo.`,
    );
}
