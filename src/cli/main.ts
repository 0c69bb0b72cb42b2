// `owncloud-backup`: the same engine as the action, from a shell. Options carry the
// action's input names; secrets come from the environment or files, never from a
// command-line value (which every user of the machine can read in the process list).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runBackup, type BackupResult } from '../backup.ts';
import {
  listResticBackups,
  resticSecretValues,
  runResticBackup,
  type ListedBackup,
  type ResticBackupResult,
} from '../backup-restic.ts';
import { cleanupPrevious, runRestore, type RestoreResult } from '../restore.ts';
import {
  listBackupPath,
  memberOf,
  runPathRestore,
  type PathRestoreResult,
} from '../restore-paths.ts';
import { describeError, InputError, InterruptedError } from '../errors.ts';
import { describeEncryption, leftOutOf } from '../manifest.ts';
import { PROGRESS_ENV, progressSecondsFrom } from '../progress.ts';
import { formatSeconds, streamReporter } from '../report.ts';
import { withIdentity } from '../steps/age.ts';
import { Secrets } from '../secrets.ts';
import {
  KEEP_INPUTS,
  cliLabel,
  INPUTS,
  planBackup,
  planInstance,
  planPathRestore,
  planRestore,
  userPath,
  type InputLabel,
  type InputName,
  type RawInputs,
} from '../settings.ts';
import { formatBytes } from '../steps/preflight.ts';
import { repositoryUrlPassword } from '../destination/restic.ts';
import type { RetentionOutcome } from '../steps/backup-dir.ts';
import { describePolicy } from '../retention.ts';
import { TOOL } from '../tool.ts';
import { UnverifiableError, verifyAndTestRestore, verifyBackup } from '../verify.ts';
import { restoreTestLine, SERVER_DIRS_ENV } from '../steps/restore-test.ts';

export const EXIT = { ok: 0, failed: 1, usage: 2, skipped: 3, interrupted: 130 } as const;

export const ENV = {
  dbPassword: 'OWNCLOUD_BACKUP_DB_PASSWORD',
  dbAdminPassword: 'OWNCLOUD_BACKUP_DB_ADMIN_PASSWORD',
  sshKey: 'OWNCLOUD_BACKUP_SSH_KEY',
  identity: 'OWNCLOUD_BACKUP_IDENTITY',
  resticRepository: 'OWNCLOUD_BACKUP_RESTIC_REPOSITORY',
  resticPassword: 'OWNCLOUD_BACKUP_RESTIC_PASSWORD',
} as const;

const USAGE = `Usage: owncloud-backup backup [options]
       owncloud-backup backup --destination restic --restic-repository REPO [options]
       owncloud-backup list --restic-repository REPO [options]
       owncloud-backup verify [--restore-test] [--identity-file FILE] BACKUP-DIR
       owncloud-backup restore BACKUP-DIR [options]
       owncloud-backup restore --snapshot ID|latest --restic-repository REPO [options]
       owncloud-backup restore BACKUP-DIR --path USER/files/PATH [--path ...] [options]
       owncloud-backup restore BACKUP-DIR --list USER/files/DIR
       owncloud-backup restore --cleanup [options]
       owncloud-backup --help | --version

Backs up an ownCloud (or Nextcloud) server: config/, the data directory, the database and
custom themes, into a dated directory holding compressed archives and manifest.json.

Where the server is (no --host: this machine):
  --host HOST              SSH host of the ownCloud server
  --port N                 SSH port (22)
  --user NAME              SSH user (root)
  --ssh-key-file FILE      private key (or env ${ENV.sshKey} holding the key)
  --known-hosts LINE       known_hosts line for the host (repeatable)
  --known-hosts-file FILE  known_hosts lines for the host
What to back up:
  --owncloud-dir DIR       installation directory (/var/www/owncloud)
  --data-dir DIR           data directory (config.php's datadirectory)
  --extra-paths PATH       more paths, relative to owncloud-dir or absolute (repeatable)
  --exclude PATTERN        rsync pattern to leave out, e.g. '*/thumbnails/' (repeatable)
  --install-type TYPE      auto (default: package if a dpkg/rpm package owns occ), package
                           (server code is not copied, app-store apps are) or tarball
The database (each defaults to config.php's value):
  --db-type TYPE           auto, mysql, pgsql or sqlite
  --db-host HOST  --db-port N  --db-name NAME  --db-user USER
  --db-password-file FILE  password (or env ${ENV.dbPassword})
Behaviour:
  --maintenance-mode BOOL  switch maintenance mode on for the dump (true)
  --occ-user USER          who runs occ (the owner of config.php)
  --compression TYPE       zstd (default) or gzip
  --backup-dir DIR         where the dated backup directory is written (.)
  --dump-timeout SECONDS   give up on a dump silent this long (600)
  --ssh-keepalive SECONDS  SSH keepalive interval; 3 missed end the link (5)
  --restore-test BOOL      after writing the backup, load its dump into a throwaway
                           database server on this machine and compare every table's rows
                           with the counts taken in the maintenance window; check the files
                           archive for config.php, the data marker and every user's files/
                           (false here: the command line often runs on the ownCloud server
                           itself; the action's default is true). A mismatch fails the backup
Encryption at rest (age, on this machine):
  --encrypt-to RECIPIENT   encrypt every archive and the dump to this recipient as they are
                           written: an age public key ('age1…') or an SSH public key
                           ('ssh-ed25519 …', 'ssh-rsa …'); repeatable. Needs the age tool
  --identity-file FILE     the secret key that decrypts an encrypted backup, for restore,
                           verify and the restore test (or env ${ENV.identity}
                           holding the key)
Retention (after a successful backup, the complete dated backups in --backup-dir that no
rule keeps are removed; restic's forget rules; days, weeks, months and years in UTC, as the
backup names; no --keep-* option: nothing is ever removed; 0: the rule is off):
  --keep-last N            the N newest backups
  --keep-daily N           for the N newest days with backups, the newest of each day
  --keep-weekly N          likewise for ISO weeks (Monday to Sunday)
  --keep-monthly N         likewise for months
  --keep-yearly N          likewise for years
                           The backup just written is always kept; other files and
                           directories in --backup-dir are never touched
Into a restic repository instead of --backup-dir (restic runs on the ownCloud server, which
reads the files in place: no file crosses this machine; the dump passes through it):
  --destination TYPE       directory (default) or restic
  --restic-repository REPO any restic repository as seen from the server: a path, sftp:,
                           rest:, s3:, b2:, azure:, gs:, rclone: (or env
                           ${ENV.resticRepository}, for one holding credentials)
  --restic-password-file FILE  the repository password (or env ${ENV.resticPassword})
  --restic-env NAME        a backend variable (AWS_ACCESS_KEY_ID, …) to pass to restic with
                           the value it has here; repeatable
  --restic-option KEY=VAL  a restic extended option (-o), e.g. sftp.connections=2; repeatable
  --restic-init            create the repository when there is none yet
  --check MODE             after the backup: none (default), metadata (restic check) or
                           read-data-subset=N% (also reads N% of the data)
                           The --keep-* options apply to the instance's backups in the
                           repository (every snapshot of a removed backup, then prune)
  list shows the complete backups in the repository: name, manifest snapshot, date, instance,
  version, database type and size.
  restore --snapshot ID|latest restores one of them (a snapshot id or its first digits, a
  backup name, or latest) with restic on the target server, which must reach the
  repository: the files go from the repository onto the server, restic reads each back
  (--verify); the dump passes through this machine into the database client
  env ${SERVER_DIRS_ENV}  where to look for the server programs
                           after PATH (':'-separated), instead of /usr/sbin,
                           /usr/lib/postgresql/*/bin and the like
  env ${PROGRESS_ENV}  seconds between progress lines of the copy and archive (10)
Restore (the same options say where the server is; --owncloud-dir and --data-dir default
to the paths the backup recorded, the --db-* options replace config.php's values):
  --db-admin-user USER     account that may drop and create databases (and the instance's
                           user); without it the instance's user empties its database
  --db-admin-password-file FILE  its password (or env ${ENV.dbAdminPassword})
  --safety-copy BOOL       move the current state aside first, to put it back if the
                           restore fails (true); false for a new, empty host
  --discard-previous       remove the moved-aside state once the restore succeeded
  --cleanup                remove the state earlier restores moved aside, and exit
  --owner USER             owner of the restored files when the archive's owners do not
                           exist on the target (the owner of the installation directory)
  --allow-version-mismatch restore onto server code of another version (package installs)
Restore of single files and folders into the running instance (no maintenance mode, the
database stays; encryption keys and file cache values come back with encrypted files):
  --path USER/files/PATH   a file or folder as the user sees it (repeatable); also
                           USER/files_versions/... and USER/files_trashbin/...
  --as-copy                put restored items beside the current ones, named
                           'NAME (restored DATE)', DATE the backup's
  --overwrite              replace current files even when they are newer than the
                           backup's (without it, newer files are skipped and named)
  --list USER/files/DIR    show what the backup holds there (size, mtime, name), and exit
Other:
  -h, --help               show this help
  --version                show the version

verify checks a backup directory from its manifest alone: sizes, SHA-256, complete
decompression, the dump's completion line, and the files archive's listing to its end.
With --restore-test it then runs the restore test on it (see --restore-test above).

restore verifies the backup first (every byte), checks the target before changing it, and
puts the previous state back (files, database, maintenance mode) if any step fails.

Exit status of restore: 0 restored, 1 failed (the message says in which state the instance
is), 2 bad usage or input, 130 interrupted (the previous state is put back first).
Exit status of backup: 0 done, 1 the backup failed, 2 bad usage or input, 130 interrupted.
Exit status of verify: 0 intact (and, with --restore-test, the restore test passed),
1 damaged, missing or unreadable (not a backup that checks out) or the restore test failed,
2 bad usage, 3 intact as far as it could be checked: the restore test was skipped (no server
programs on this machine), or the backup is encrypted and no identity was given (only the
files' sizes and SHA-256 were checked), 130 interrupted.`;

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
  host: { type: 'string' },
  port: { type: 'string' },
  user: { type: 'string' },
  'ssh-key': { type: 'string' },
  'ssh-key-file': { type: 'string' },
  'known-hosts': { type: 'string', multiple: true },
  'known-hosts-file': { type: 'string' },
  'owncloud-dir': { type: 'string' },
  'data-dir': { type: 'string' },
  'extra-paths': { type: 'string', multiple: true },
  exclude: { type: 'string', multiple: true },
  'install-type': { type: 'string' },
  'db-type': { type: 'string' },
  'db-host': { type: 'string' },
  'db-port': { type: 'string' },
  'db-name': { type: 'string' },
  'db-user': { type: 'string' },
  'db-password': { type: 'string' },
  'db-password-file': { type: 'string' },
  'maintenance-mode': { type: 'string' },
  'occ-user': { type: 'string' },
  compression: { type: 'string' },
  'backup-dir': { type: 'string' },
  'dump-timeout': { type: 'string' },
  'restore-test': { type: 'string' },
  'keep-last': { type: 'string' },
  'keep-daily': { type: 'string' },
  'keep-weekly': { type: 'string' },
  'keep-monthly': { type: 'string' },
  'keep-yearly': { type: 'string' },
  'ssh-keepalive': { type: 'string' },
  'db-admin-user': { type: 'string' },
  'db-admin-password': { type: 'string' },
  'db-admin-password-file': { type: 'string' },
  'safety-copy': { type: 'string' },
  'discard-previous': { type: 'boolean' },
  cleanup: { type: 'boolean' },
  owner: { type: 'string' },
  'allow-version-mismatch': { type: 'boolean' },
  path: { type: 'string', multiple: true },
  'as-copy': { type: 'boolean' },
  overwrite: { type: 'boolean' },
  list: { type: 'string' },
  'encrypt-to': { type: 'string', multiple: true },
  identity: { type: 'string' },
  'identity-file': { type: 'string' },
  destination: { type: 'string' },
  'restic-repository': { type: 'string' },
  'restic-password': { type: 'string' },
  'restic-password-file': { type: 'string' },
  'restic-env': { type: 'string', multiple: true },
  'restic-option': { type: 'string', multiple: true },
  'restic-init': { type: 'boolean' },
  check: { type: 'string' },
  snapshot: { type: 'string' },
} as const;

/** Options that mean something for one command only. */
const ONLY_FOR: Record<
  string,
  'backup' | 'restore' | 'backup or list' | 'backup or list or restore'
> = {
  destination: 'backup',
  'restic-init': 'backup',
  check: 'backup',
  'restic-repository': 'backup or list or restore',
  'restic-password-file': 'backup or list or restore',
  'restic-env': 'backup or list or restore',
  'restic-option': 'backup or list or restore',
  snapshot: 'restore',
  'extra-paths': 'backup',
  exclude: 'backup',
  'install-type': 'backup',
  'maintenance-mode': 'backup',
  compression: 'backup',
  'backup-dir': 'backup',
  'dump-timeout': 'backup',
  'restore-test': 'backup',
  'encrypt-to': 'backup',
  'keep-last': 'backup',
  'keep-daily': 'backup',
  'keep-weekly': 'backup',
  'keep-monthly': 'backup',
  'keep-yearly': 'backup',
  'db-admin-user': 'restore',
  'db-admin-password-file': 'restore',
  'safety-copy': 'restore',
  'discard-previous': 'restore',
  cleanup: 'restore',
  owner: 'restore',
  'allow-version-mismatch': 'restore',
  path: 'restore',
  'as-copy': 'restore',
  overwrite: 'restore',
  list: 'restore',
};

function readSecretFile(option: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new InputError(
      `Cannot read ${option} '${path}': ${(error as NodeJS.ErrnoException).code ?? String(error)}.`,
    );
  }
}

/** The age identity, from --identity-file or the environment, and where it came from. */
function identityFrom(
  file: string | undefined,
  env: NodeJS.ProcessEnv,
): { text: string; source: string } | undefined {
  if (file)
    return { text: readSecretFile('--identity-file', file), source: 'option --identity-file' };
  if (env[ENV.identity])
    return { text: env[ENV.identity]!, source: `environment variable ${ENV.identity}` };
  return undefined;
}

/**
 * How an input is named in an error: as the option (or environment variable) the user
 * actually gave it with, e.g. --ssh-key-file for the input ssh-key.
 */
function labelFromSources(sources: Partial<Record<InputName, string>>): InputLabel {
  return (name) => sources[name] ?? cliLabel(name);
}

/** Turns argv and the environment into the same raw inputs the action reads. */
export function cliInputs(
  args: string[],
  env: NodeJS.ProcessEnv,
  cwd: string = process.cwd(),
): {
  command: 'backup' | 'restore' | 'list';
  raw: RawInputs;
  label: InputLabel;
  keepAliveSeconds?: number;
  /** restore: the backup directory (absent with --cleanup). */
  backupPath?: string;
  cleanup?: boolean;
  /** restore --list: the path whose contents to show. */
  list?: string;
} {
  let parsed;
  try {
    parsed = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw new InputError(`${(error as Error).message.split('\n')[0]} (see owncloud-backup --help)`);
  }
  const { values, positionals } = parsed;
  const command = positionals[0];
  if (command !== 'backup' && command !== 'restore' && command !== 'list')
    throw new InputError(
      `Expected the command 'backup', 'restore', 'list' or 'verify', got '${positionals.join(' ')}' (see owncloud-backup --help).`,
    );
  for (const [option, only] of Object.entries(ONLY_FOR))
    if (
      !only.split(' or ').includes(command) &&
      values[option as keyof typeof values] !== undefined
    )
      throw new InputError(
        `Option --${option} only applies to ${only} (see owncloud-backup --help).`,
      );
  let backupPath: string | undefined;
  if ((command === 'backup' || command === 'list') && positionals.length !== 1)
    throw new InputError(
      `Unexpected argument '${positionals.slice(1).join(' ')}' after '${command}' (see owncloud-backup --help).`,
    );
  if (command === 'restore') {
    if (values.cleanup && positionals.length !== 1)
      throw new InputError(
        'restore --cleanup takes no BACKUP-DIR: it removes what earlier restores moved aside.',
      );
    if (values.snapshot !== undefined && positionals.length !== 1)
      throw new InputError(
        `restore --snapshot takes no BACKUP-DIR ('${positionals.slice(1).join(' ')}'): the backup is the repository's snapshot.`,
      );
    if (
      values.snapshot !== undefined &&
      (values.cleanup || values.path || values.list !== undefined)
    )
      throw new InputError(
        `Option --snapshot restores a whole instance from a restic repository: it does not go with ${values.cleanup ? '--cleanup' : values.path ? '--path (not available from a repository yet: restore the file with restic restore by hand, as the README shows)' : '--list'}.`,
      );
    if (!values.cleanup && values.snapshot === undefined && positionals.length !== 2)
      throw new InputError(
        'Expected: owncloud-backup restore BACKUP-DIR [options], or restore --snapshot ID|latest --restic-repository REPO (see owncloud-backup --help).',
      );
    if (positionals[1] !== undefined) backupPath = resolve(cwd, positionals[1]);
  }
  if (values['db-admin-password'] !== undefined)
    throw new InputError(
      `Refusing --db-admin-password: a password on the command line is visible to every user of this machine. Use the environment variable ${ENV.dbAdminPassword} or --db-admin-password-file.`,
    );
  if (values['db-password'] !== undefined)
    throw new InputError(
      `Refusing --db-password: a password on the command line is visible to every user of this machine. Use the environment variable ${ENV.dbPassword} or --db-password-file.`,
    );
  if (values['ssh-key'] !== undefined)
    throw new InputError(
      `Refusing --ssh-key: pass the key as a file (--ssh-key-file) or in ${ENV.sshKey}.`,
    );
  if (values['restic-password'] !== undefined)
    throw new InputError(
      `Refusing --restic-password: a password on the command line is visible to every user of this machine. Use the environment variable ${ENV.resticPassword} or --restic-password-file.`,
    );
  if (values.identity !== undefined)
    throw new InputError(
      `Refusing --identity: a secret key on the command line is visible to every user of this machine. Pass it as a file (--identity-file) or in ${ENV.identity}.`,
    );

  const raw: RawInputs = {};
  const plain: InputName[] = [
    INPUTS.host,
    INPUTS.port,
    INPUTS.user,
    INPUTS.owncloudDir,
    INPUTS.dataDir,
    INPUTS.installType,
    INPUTS.dbType,
    INPUTS.dbHost,
    INPUTS.dbPort,
    INPUTS.dbName,
    INPUTS.dbUser,
    INPUTS.maintenanceMode,
    INPUTS.occUser,
    INPUTS.compression,
    INPUTS.backupDir,
    INPUTS.dumpTimeout,
    INPUTS.restoreTest,
    ...KEEP_INPUTS,
    INPUTS.dbAdminUser,
    INPUTS.safetyCopy,
    INPUTS.owner,
  ];
  for (const name of plain) {
    const value = values[name as keyof typeof values];
    if (typeof value === 'string') raw[name] = value;
  }
  if (values['discard-previous']) raw[INPUTS.discardPrevious] = 'true';
  if (values.path) raw[INPUTS.path] = values.path.join('\n');
  if (values['as-copy']) raw[INPUTS.asCopy] = 'true';
  if (values.overwrite) raw[INPUTS.overwrite] = 'true';
  if (values.list !== undefined && (values.path || values.cleanup))
    throw new InputError(
      `Option --list shows what a backup holds and restores nothing: it does not go with ${values.path ? '--path' : '--cleanup'}.`,
    );
  if (values.cleanup && values.path)
    throw new InputError('Option --cleanup does not go with --path (see owncloud-backup --help).');
  if (values['allow-version-mismatch']) raw[INPUTS.allowVersionMismatch] = 'true';
  // A relative backup-dir (the help's default is `.`) is taken from the working directory.
  const backupDir = raw[INPUTS.backupDir]?.trim() || '.';
  if (command === 'backup')
    raw[INPUTS.backupDir] =
      backupDir.startsWith('-') || backupDir.includes('\0') ? backupDir : resolve(cwd, backupDir);
  if (values['extra-paths']) raw[INPUTS.extraPaths] = values['extra-paths'].join('\n');
  if (values.exclude) raw[INPUTS.exclude] = values.exclude.join('\n');
  if (values['encrypt-to']) raw[INPUTS.encryptTo] = values['encrypt-to'].join('\n');
  if (command === 'list') raw[INPUTS.destination] = 'restic';
  else if (values.destination !== undefined) raw[INPUTS.destination] = values.destination;
  if (values['restic-env']) raw[INPUTS.resticEnv] = values['restic-env'].join('\n');
  if (values['restic-option']) raw[INPUTS.resticOption] = values['restic-option'].join('\n');
  if (values['restic-init']) raw[INPUTS.resticInit] = 'true';
  if (values.check !== undefined) raw[INPUTS.check] = values.check;
  if (values.snapshot !== undefined) raw[INPUTS.snapshot] = values.snapshot;
  const sources: Partial<Record<InputName, string>> = {
    [INPUTS.sshKey]: `option --ssh-key-file (or environment variable ${ENV.sshKey})`,
    [INPUTS.knownHosts]: 'option --known-hosts (or --known-hosts-file)',
  };
  const knownHosts = [...(values['known-hosts'] ?? [])];
  if (values['known-hosts-file']) {
    knownHosts.push(readSecretFile('--known-hosts-file', values['known-hosts-file']));
    sources[INPUTS.knownHosts] = values['known-hosts']
      ? 'options --known-hosts and --known-hosts-file'
      : 'option --known-hosts-file';
  } else if (values['known-hosts']) sources[INPUTS.knownHosts] = 'option --known-hosts';
  if (knownHosts.length > 0) raw[INPUTS.knownHosts] = knownHosts.join('\n');

  if (values['ssh-key-file']) {
    raw[INPUTS.sshKey] = readSecretFile('--ssh-key-file', values['ssh-key-file']);
    sources[INPUTS.sshKey] = 'option --ssh-key-file';
  } else if (env[ENV.sshKey]) {
    raw[INPUTS.sshKey] = env[ENV.sshKey];
    sources[INPUTS.sshKey] = `environment variable ${ENV.sshKey}`;
  }
  const identity = identityFrom(values['identity-file'], env);
  if (identity) {
    raw[INPUTS.identity] = identity.text;
    sources[INPUTS.identity] = identity.source;
  }
  if (values['db-password-file']) {
    raw[INPUTS.dbPassword] = readSecretFile(
      '--db-password-file',
      values['db-password-file'],
    ).replace(/\r?\n$/, '');
    sources[INPUTS.dbPassword] = 'option --db-password-file';
  } else if (env[ENV.dbPassword] !== undefined) {
    raw[INPUTS.dbPassword] = env[ENV.dbPassword];
    sources[INPUTS.dbPassword] = `environment variable ${ENV.dbPassword}`;
  }

  const restic =
    command === 'list' ||
    raw[INPUTS.destination]?.trim().toLowerCase() === 'restic' ||
    (command === 'restore' && values.snapshot !== undefined);
  if (values['restic-repository'] !== undefined) {
    if (repositoryUrlPassword(values['restic-repository']) !== undefined)
      throw new InputError(
        `Refusing --restic-repository with a password in its URL: the command line is visible to every user of this machine. Put the repository in the environment variable ${ENV.resticRepository}.`,
      );
    raw[INPUTS.resticRepository] = values['restic-repository'];
    sources[INPUTS.resticRepository] = 'option --restic-repository';
  } else if (restic && env[ENV.resticRepository]) {
    raw[INPUTS.resticRepository] = env[ENV.resticRepository];
    sources[INPUTS.resticRepository] = `environment variable ${ENV.resticRepository}`;
  }
  if (values['restic-password-file']) {
    raw[INPUTS.resticPassword] = readSecretFile(
      '--restic-password-file',
      values['restic-password-file'],
    ).replace(/\r?\n$/, '');
    sources[INPUTS.resticPassword] = 'option --restic-password-file';
  } else if (restic && env[ENV.resticPassword] !== undefined) {
    raw[INPUTS.resticPassword] = env[ENV.resticPassword];
    sources[INPUTS.resticPassword] = `environment variable ${ENV.resticPassword}`;
  } else
    sources[INPUTS.resticPassword] =
      `option --restic-password-file (or environment variable ${ENV.resticPassword})`;

  if (values['db-admin-password-file']) {
    raw[INPUTS.dbAdminPassword] = readSecretFile(
      '--db-admin-password-file',
      values['db-admin-password-file'],
    ).replace(/\r?\n$/, '');
    sources[INPUTS.dbAdminPassword] = 'option --db-admin-password-file';
  } else if (command === 'restore' && env[ENV.dbAdminPassword] !== undefined) {
    raw[INPUTS.dbAdminPassword] = env[ENV.dbAdminPassword];
    sources[INPUTS.dbAdminPassword] = `environment variable ${ENV.dbAdminPassword}`;
  }

  let keepAliveSeconds: number | undefined;
  if (values['ssh-keepalive'] !== undefined) {
    if (!values.host)
      throw new InputError(
        'Invalid option --ssh-keepalive: it only applies with option --host (without a host, the server is this machine and there is no SSH connection).',
      );
    if (!/^\d+$/.test(values['ssh-keepalive']) || Number(values['ssh-keepalive']) < 1)
      throw new InputError(
        `Invalid option --ssh-keepalive: '${values['ssh-keepalive']}' is not a whole number of seconds (1 or more).`,
      );
    keepAliveSeconds = Number(values['ssh-keepalive']);
  }
  return {
    command,
    raw,
    label: labelFromSources(sources),
    ...(keepAliveSeconds ? { keepAliveSeconds } : {}),
    ...(backupPath ? { backupPath } : {}),
    ...(values.cleanup ? { cleanup: true } : {}),
    ...(values.list !== undefined ? { list: values.list } : {}),
  };
}

export function summary(result: BackupResult): string {
  const { manifest } = result;
  const product = manifest.instance.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud';
  const width = Math.max(...manifest.archives.map((a) => a.name.length));
  const lines = [
    `Backup complete: ${result.directory}`,
    `  ${product} ${manifest.instance.version} (instance ${manifest.instance.instanceId}) from ${manifest.source.host}, ${manifest.source.installType} install (${manifest.source.installTypeReason})`,
    `  database ${manifest.database.type} '${manifest.database.name}', dumped with ${manifest.database.dumpTool} (${manifest.database.dumpToolVersion})`,
    ...manifest.archives.map(
      (a) => `  ${a.name.padEnd(width)}  ${formatBytes(a.size).padStart(10)}  sha256 ${a.sha256}`,
    ),
    `  manifest.json, SHA256SUMS`,
    ...(manifest.encryption
      ? [`  server-side encryption: ${describeEncryption(manifest.encryption)}`]
      : []),
    `  ${manifest.files.fileCount} files (${formatBytes(manifest.files.bytes)}) from ${Object.values(manifest.files.layout).join(', ')}`,
    ...leftOutOf(manifest).map(
      (item) => `  left out: ${item.what.replaceAll('`', '')}${item.why ? ` (${item.why})` : ''}`,
    ),
    `  maintenance mode: ${manifest.maintenance.managed ? (manifest.maintenance.switchedByUs ? `on for ${formatSeconds(manifest.maintenance.seconds)}, then off again` : 'was on already, left on') : 'not managed (disabled by option)'}`,
    ...(manifest.restoreTest ? [`  ${restoreTestLine(manifest.restoreTest)}`] : []),
    ...(result.retention ? retentionLines(result.retention) : []),
    `  took ${formatSeconds(manifest.durationSeconds)}`,
  ];
  return `${lines.join('\n')}\n`;
}

export function resticSummary(result: ResticBackupResult): string {
  const { manifest } = result;
  const product = manifest.instance.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud';
  const lines = [
    `Backup complete: ${result.name} in the restic repository ${manifest.repository.display}`,
    `  ${product} ${manifest.instance.version} (instance ${manifest.instance.instanceId}) from ${manifest.source.host}`,
    `  manifest snapshot ${result.snapshot}; installation snapshot ${manifest.snapshots.install}; data snapshot ${manifest.snapshots.files}; database snapshot ${manifest.snapshots.database} (${manifest.database.dumpFile})${manifest.snapshots.encryptionIndex ? `; encryption index snapshot ${manifest.snapshots.encryptionIndex}` : ''}`,
    `  database ${manifest.database.type} '${manifest.database.name}', dumped with ${manifest.database.dumpTool} (${manifest.database.dumpToolVersion}), ${formatBytes(manifest.database.dumpBytes)}`,
    `  ${formatBytes(manifest.files.bytes)} of files; ${formatBytes(manifest.dataAdded)} added to the repository`,
    `  maintenance mode: ${manifest.maintenance.managed ? (manifest.maintenance.switchedByUs ? `on for ${formatSeconds(manifest.maintenance.seconds)}, then off again` : 'was on already, left on') : 'not managed (disabled by option)'}`,
    ...(result.retention
      ? [
          `  retention: kept ${result.retention.kept.length}, removed ${result.retention.removed.length}`,
          ...result.retention.removed.map((name) => `    removed ${name}`),
        ]
      : []),
    ...(result.checked ? [`  ${result.checked}: no errors`] : []),
  ];
  return `${lines.join('\n')}\n`;
}

export function listText(backups: readonly ListedBackup[]): string {
  if (backups.length === 0) return 'No complete backups in the repository.\n';
  const rows = backups.map((b) => [
    b.name,
    b.snapshot.slice(0, 8),
    b.time.replace(/\.\d+/, ''),
    b.instance,
    b.version,
    b.db,
    formatBytes(b.bytes),
  ]);
  const head = ['BACKUP', 'SNAPSHOT', 'TIME', 'INSTANCE', 'VERSION', 'DB', 'SIZE'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return `${[head, ...rows]
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

function retentionLines(retention: RetentionOutcome): string[] {
  const { kept, removed, failed } = retention;
  return [
    `  retention (${describePolicy(retention.policy)}; UTC): kept ${kept.length}, removed ${removed.length}${failed.length ? `, ${failed.length} not kept could not be removed` : ''}`,
    ...removed.map((r) => `    removed ${r.name}`),
    ...failed.map((f) => `    not removed (${f.error.replace(/\.$/, '')}): ${f.remains}`),
  ];
}

export function restoreSummary(result: RestoreResult): string {
  const { manifest } = result;
  const product = manifest.instance.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud';
  const lines = [
    `Restore complete: ${manifest.name} onto ${result.target} (${result.inPlace ? 'in place' : 'a new host'})`,
    `  ${product} ${manifest.instance.version} (instance ${manifest.instance.instanceId}), backed up ${manifest.startedAt} from ${manifest.source.host}`,
    `  ${manifest.files.fileCount} files (${formatBytes(manifest.files.bytes)}); database ${manifest.database.type} '${manifest.database.name}'${result.tablesChecked ? `, ${result.tablesChecked} tables with the recorded row counts` : ''}`,
    ...(result.changedConfig.length
      ? [`  config.php changed: ${result.changedConfig.join(', ')}`]
      : []),
    `  maintenance mode ${manifest.maintenance.priorState ? 'on (as before the backup)' : 'off'}; data fingerprint renewed`,
    result.previous
      ? `  previous state kept in ${result.previous.paths.join(', ')} (${formatBytes(result.previous.bytes)}): owncloud-backup restore --cleanup removes it`
      : '  no previous state kept',
    `  took ${formatSeconds(result.seconds)}`,
  ];
  return `${lines.join('\n')}\n`;
}

export async function runCli(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h') || args.length === 0) {
    process.stdout.write(`${USAGE}\n`);
    return args.length === 0 ? EXIT.usage : EXIT.ok;
  }
  if (args.includes('--version')) {
    process.stdout.write(`${TOOL.name} ${TOOL.version}\n`);
    return EXIT.ok;
  }
  if (args[0] === 'verify') return verify(args.slice(1));
  const secrets = new Secrets();
  const reporter = streamReporter(
    (text) => process.stderr.write(text),
    (text) => secrets.redact(text),
  );
  const controller = new AbortController();
  let signals = 0;
  let restoring: false | 'instance' | 'paths' = false;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      reporter.warning(
        restoring === 'paths'
          ? `${signal}: stopping after the current step (files being put in place are all placed, or none).`
          : restoring
            ? `${signal}: stopping; the previous state is put back before exiting.`
            : `${signal}: stopping; maintenance mode is restored before exiting.`,
      );
      controller.abort();
    } else if (signals === 2) {
      reporter.warning(
        restoring
          ? `${signal} again: still putting the previous state back. A third one exits at once and may leave the instance half restored.`
          : `${signal} again: still restoring maintenance mode. A third one exits at once and may leave it on.`,
      );
    } else {
      process.exit(EXIT.interrupted);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const inputs = cliInputs(args, process.env);
    const { raw, label, keepAliveSeconds } = inputs;
    secrets.add(raw[INPUTS.dbPassword]);
    secrets.add(raw[INPUTS.sshKey]);
    secrets.add(raw[INPUTS.dbAdminPassword]);
    secrets.add(raw[INPUTS.identity]);
    secrets.add(raw[INPUTS.resticPassword]);
    if (inputs.command === 'list' || raw[INPUTS.destination]?.trim().toLowerCase() === 'restic') {
      const planned = planBackup(
        raw,
        { backupDir: process.cwd(), environment: process.env },
        label,
      );
      for (const value of resticSecretValues(planned.restic!)) secrets.add(value);
      const ssh = keepAliveSeconds ? { ssh: { keepAliveSeconds } } : {};
      if (inputs.command === 'list') {
        const listed = await listResticBackups(planned, { reporter, secrets, ...ssh });
        process.stdout.write(listText(listed));
        return EXIT.ok;
      }
      const result = await runResticBackup(planned, {
        reporter,
        secrets,
        signal: controller.signal,
        progressSeconds: progressSecondsFrom(process.env),
        ...ssh,
      });
      process.stdout.write(resticSummary(result));
      return EXIT.ok;
    }
    if (inputs.command === 'restore' && inputs.list !== undefined)
      return await listPath(inputs.backupPath!, inputs.list, planInstance(raw, label).identity);
    if (inputs.command === 'restore' && raw[INPUTS.path] !== undefined) {
      restoring = 'paths';
      const plan = planPathRestore(raw, inputs.backupPath!, label);
      const result = await runPathRestore(plan, {
        reporter,
        secrets,
        signal: controller.signal,
        ...(keepAliveSeconds ? { ssh: { keepAliveSeconds } } : {}),
      });
      process.stdout.write(pathRestoreSummary(result));
      return EXIT.ok;
    }
    if (inputs.command === 'restore') {
      restoring = 'instance';
      const plan = planRestore(raw, inputs.backupPath ?? '', label, process.env);
      if (plan.repository)
        for (const value of resticSecretValues(plan.repository.restic)) secrets.add(value);
      const ssh = keepAliveSeconds ? { ssh: { keepAliveSeconds } } : {};
      if (inputs.cleanup) {
        const paths = [
          plan.owncloudDir || '/var/www/owncloud',
          ...(plan.dataDir ? [plan.dataDir] : []),
        ];
        const cleaned = await cleanupPrevious(plan, { reporter, secrets, ...ssh }, paths);
        process.stdout.write(
          cleaned.removed.length === 0
            ? 'No previous state of an earlier restore found.\n'
            : `Removed ${cleaned.removed.join(', ')} (${formatBytes(cleaned.bytes)}).\n`,
        );
        return EXIT.ok;
      }
      const result = await runRestore(plan, {
        reporter,
        secrets,
        signal: controller.signal,
        progressSeconds: progressSecondsFrom(process.env),
        ...ssh,
      });
      process.stdout.write(restoreSummary(result));
      return EXIT.ok;
    }
    const plan = planBackup(raw, { backupDir: process.cwd() }, label);
    const result = await runBackup(plan, {
      reporter,
      secrets,
      signal: controller.signal,
      progressSeconds: progressSecondsFrom(process.env),
      ...(keepAliveSeconds ? { ssh: { keepAliveSeconds } } : {}),
    });
    process.stdout.write(summary(result));
    return EXIT.ok;
  } catch (error) {
    process.stderr.write(`owncloud-backup: error: ${secrets.redact(describeError(error))}\n`);
    if (error instanceof InputError) return EXIT.usage;
    if (error instanceof InterruptedError || controller.signal.aborted) return EXIT.interrupted;
    return EXIT.failed;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** `restore BACKUP-DIR --list USER/files/DIR`: size, mtime (UTC) and name, one a line. */
async function listPath(
  backupPath: string,
  given: string,
  identity: string | undefined,
): Promise<number> {
  const path = userPath(given);
  if (typeof path === 'string') throw new InputError(`Invalid option --list: ${path}`);
  const { manifest, entries } = await listBackupPath(backupPath, path, identity);
  const base = memberOf(path.user, path.path);
  process.stdout.write(
    `${path.user}/${path.path} in the backup of ${manifest.startedAt} (${manifest.name}):\n`,
  );
  for (const entry of entries) {
    const relative = entry.name === base ? '.' : entry.name.slice(base.length + 1);
    const size = entry.type === 'directory' ? '-' : String(entry.size);
    const name = entry.type === 'directory' ? `${relative}/` : relative;
    const link = entry.type === 'symlink' ? ` -> ${entry.linkTarget}` : '';
    process.stdout.write(
      `${size.padStart(12)}  ${entry.mtime}  ${JSON.stringify(name).slice(1, -1)}${link}\n`,
    );
  }
  return EXIT.ok;
}

export function pathRestoreSummary(result: PathRestoreResult): string {
  const { manifest } = result;
  const lines = [
    `Restore complete: ${result.placed.length} file${result.placed.length === 1 ? '' : 's'} from ${manifest.name} (backed up ${manifest.startedAt}) into ${result.target}`,
    ...result.placed
      .slice(0, 50)
      .map(
        (p) => `  restored ${p.user}/${p.from}${p.to !== p.from ? ` as ${p.user}/${p.to}` : ''}`,
      ),
    ...(result.placed.length > 50 ? [`  … and ${result.placed.length - 50} more`] : []),
    ...(result.unchanged ? [`  ${result.unchanged} already as in the backup, left alone`] : []),
    ...result.skipped.map((s) => `  skipped ${s.user}/${s.path}: ${s.reason}`),
    ...(result.skipped.length
      ? ['  (restore skipped files with --overwrite, or beside the current ones with --as-copy)']
      : []),
    ...(result.scanned.length ? [`  occ files:scan: ${result.scanned.join(', ')}`] : []),
    ...(result.filesOnly.length
      ? [
          `  restored as files (versions and trash bin are not scanned): ${result.filesOnly.join(', ')}`,
        ]
      : []),
    ...(result.cacheRows
      ? [`  ${result.cacheRows} file cache rows hold the encryption values recorded at backup time`]
      : []),
    result.previous
      ? `  ${result.replaced} replaced item${result.replaced === 1 ? '' : 's'} kept in ${result.previous}: owncloud-backup restore --cleanup removes ${result.replaced === 1 ? 'it' : 'them'}`
      : '  nothing was replaced',
    `  took ${formatSeconds(result.seconds)}`,
  ];
  return `${lines.join('\n')}\n`;
}

async function verify(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { 'restore-test': { type: 'boolean' }, 'identity-file': { type: 'string' } },
      allowPositionals: true,
      strict: true,
    });
  } catch {
    parsed = undefined;
  }
  if (!parsed || parsed.positionals.length !== 1) {
    process.stderr.write(
      'owncloud-backup: error: Expected: owncloud-backup verify [--restore-test] [--identity-file FILE] BACKUP-DIR\n',
    );
    return EXIT.usage;
  }
  const restoreTest = parsed.values['restore-test'] === true;
  const directory = parsed.positionals[0]!;
  let identity: string | undefined;
  try {
    identity = planInstance(
      { [INPUTS.identity]: identityFrom(parsed.values['identity-file'], process.env)?.text ?? '' },
      (name) =>
        name === INPUTS.identity && parsed.values['identity-file']
          ? 'option --identity-file'
          : name === INPUTS.identity
            ? `environment variable ${ENV.identity}`
            : cliLabel(name),
    ).identity;
  } catch (error) {
    process.stderr.write(`owncloud-backup: error: ${describeError(error)}\n`);
    return EXIT.usage;
  }
  // The restore test starts a server: Ctrl-C stops it and removes its directory first.
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const { checks, restoreTest: test } = await withIdentity(identity, (identityFile) =>
      restoreTest
        ? verifyAndTestRestore(directory, {
            signal: controller.signal,
            ...(identityFile ? { identityFile } : {}),
          })
        : verifyBackup(directory, undefined, identityFile).then((all) => ({
            checks: all,
            restoreTest: undefined,
          })),
    );
    for (const check of checks)
      process.stdout.write(
        `${check.ok ? 'ok    ' : check.unchecked ? 'NOT RUN' : 'FAILED'}  ${check.what}\n`,
      );
    const failed = checks.filter((c) => !c.ok && !c.unchecked).length;
    const unchecked = checks.filter((c) => c.unchecked).length;
    process.stdout.write(
      failed > 0
        ? `${directory}: DAMAGED (${failed} of ${checks.length} checks failed).\n`
        : unchecked > 0
          ? `${directory}: the encrypted files are whole (${checks.length - unchecked} checks of their size and SHA-256), their content is unchecked (${unchecked} checks not run): give --identity-file or ${ENV.identity} to check it.\n`
          : `${directory}: intact (${checks.length} checks).\n`,
    );
    if (failed > 0) {
      if (restoreTest) process.stdout.write('restore test not run: the backup is damaged.\n');
      return EXIT.failed;
    }
    if (unchecked > 0) {
      if (restoreTest)
        process.stdout.write(
          'restore test not run: the backup is encrypted and no identity was given.\n',
        );
      return EXIT.skipped;
    }
    if (!test) return EXIT.ok;
    process.stdout.write(`${restoreTestLine(test)}\n`);
    return test.result === 'passed'
      ? EXIT.ok
      : test.result === 'skipped'
        ? EXIT.skipped
        : EXIT.failed;
  } catch (error) {
    if (error instanceof InterruptedError || controller.signal.aborted) {
      process.stderr.write(
        'owncloud-backup: error: interrupted; the throwaway server was stopped.\n',
      );
      return EXIT.interrupted;
    }
    // Nothing to check (no such directory, no manifest) is a failed check, not bad usage.
    const message = error instanceof UnverifiableError ? error.message : describeError(error);
    process.stderr.write(`owncloud-backup: error: ${message}\n`);
    return EXIT.failed;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/**
 * A reader that went away (`owncloud-backup verify DIR | head -1`) is no error: the rest of
 * the output is dropped quietly and the command still ends as it would have (a backup
 * still restores maintenance mode), with its own exit status.
 */
export function dropOutputToClosedPipes(): void {
  for (const stream of [process.stdout, process.stderr])
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error;
    });
}
