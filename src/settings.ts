// What the user asked for, validated into a plan before anything touches the host. The
// action's inputs and the command line's options carry the same names (INPUTS), so one
// validation serves both; each error names the input and the form expected.
import { isAbsolute, normalize } from 'node:path';
import { InputError } from './errors.ts';
import { identityProblem, parseRecipients, type Recipient } from './steps/age.ts';
import type { RetentionPolicy } from './retention.ts';

/** Input names: the action's `with:` keys and the command line's `--options`. */
export const INPUTS = {
  host: 'host',
  port: 'port',
  user: 'user',
  sshKey: 'ssh-key',
  knownHosts: 'known-hosts',
  owncloudDir: 'owncloud-dir',
  dataDir: 'data-dir',
  extraPaths: 'extra-paths',
  exclude: 'exclude',
  installType: 'install-type',
  dbType: 'db-type',
  dbHost: 'db-host',
  dbPort: 'db-port',
  dbName: 'db-name',
  dbUser: 'db-user',
  dbPassword: 'db-password',
  maintenanceMode: 'maintenance-mode',
  occUser: 'occ-user',
  compression: 'compression',
  backupDir: 'backup-dir',
  dumpTimeout: 'dump-timeout',
  restoreTest: 'restore-test',
  encryptTo: 'encrypt-to',
  identity: 'identity',
  // Retention: of backup directories (command line) and of restic repositories.
  keepLast: 'keep-last',
  keepDaily: 'keep-daily',
  keepWeekly: 'keep-weekly',
  keepMonthly: 'keep-monthly',
  keepYearly: 'keep-yearly',
  // Where the backup goes: a backup directory (artifact) or a restic repository.
  destination: 'destination',
  resticRepository: 'restic-repository',
  resticPassword: 'restic-password',
  resticEnv: 'restic-env',
  resticOption: 'restic-option',
  resticInit: 'restic-init',
  check: 'check',
  // Restore only.
  dbAdminUser: 'db-admin-user',
  dbAdminPassword: 'db-admin-password',
  safetyCopy: 'safety-copy',
  discardPrevious: 'discard-previous',
  owner: 'owner',
  allowVersionMismatch: 'allow-version-mismatch',
  /** The backup in a restic repository to restore: a snapshot id, a backup name, or latest. */
  snapshot: 'snapshot',
  // Restore of single paths only.
  path: 'path',
  asCopy: 'as-copy',
  overwrite: 'overwrite',
} as const;

export type InputName = (typeof INPUTS)[keyof typeof INPUTS];

/** Inputs of a restore only (the backup action does not declare them). */
export const RESTORE_ONLY: readonly InputName[] = [
  INPUTS.dbAdminUser,
  INPUTS.dbAdminPassword,
  INPUTS.safetyCopy,
  INPUTS.discardPrevious,
  INPUTS.owner,
  INPUTS.allowVersionMismatch,
  INPUTS.snapshot,
  INPUTS.path,
  INPUTS.asCopy,
  INPUTS.overwrite,
];

/**
 * Inputs of the command line's backup only, which the action does not declare (none now:
 * the action takes the restic destination and its retention too).
 */
export const CLI_ONLY: readonly InputName[] = [];

/** The retention rules: for backup directories and restic repositories, not artifacts. */
export const KEEP_INPUTS: readonly InputName[] = [
  INPUTS.keepLast,
  INPUTS.keepDaily,
  INPUTS.keepWeekly,
  INPUTS.keepMonthly,
  INPUTS.keepYearly,
];

/** Inputs of a whole-instance restore that mean nothing when single paths come back. */
export const WHOLE_RESTORE_ONLY: readonly InputName[] = [
  INPUTS.dbAdminUser,
  INPUTS.dbAdminPassword,
  INPUTS.safetyCopy,
  INPUTS.discardPrevious,
  INPUTS.owner,
  INPUTS.allowVersionMismatch,
  INPUTS.dbType,
  INPUTS.dbHost,
  INPUTS.dbPort,
  INPUTS.dbName,
  INPUTS.dbUser,
  INPUTS.dbPassword,
];

/** Inputs that only mean something for an SSH connection (with `host`). */
export const SSH_ONLY: readonly InputName[] = [
  INPUTS.port,
  INPUTS.user,
  INPUTS.sshKey,
  INPUTS.knownHosts,
];

/** Raw values as the user gave them; absent or empty means "the default". */
export type RawInputs = Partial<Record<InputName, string>>;

export type DatabaseType = 'mysql' | 'pgsql' | 'sqlite';
export type Compression = 'zstd' | 'gzip';
/** How the server code was installed; `auto` detects it (see steps/installation.ts). */
export type InstallType = 'auto' | 'package' | 'tarball';

export interface SshTarget {
  kind: 'ssh';
  host: string;
  port: number;
  user: string;
  /** Private key text, newline-terminated (a secret). */
  privateKey: string;
  /** known_hosts lines for the host; the host key is checked strictly against them. */
  knownHosts: string[];
}

export interface LocalTarget {
  kind: 'local';
}

/** Database settings given explicitly; each absent one comes from config.php. */
export interface DatabaseOverrides {
  type?: DatabaseType;
  host?: string;
  port?: number;
  name?: string;
  user?: string;
  password?: string;
}

export interface BackupPlan extends InstancePlan {
  /** Further paths to include: relative ones within owncloud-dir, or absolute ones. */
  extraPaths: string[];
  /** Patterns (rsync's form) left out of the files archive. */
  exclude: string[];
  installType: InstallType;
  /** Switch maintenance mode on for the dump (and restore the prior state after). */
  maintenanceMode: boolean;
  compression: Compression;
  /** The directory in which the dated backup directory is created. */
  backupDir: string;
  /** Seconds a dump may go without producing output before it is abandoned. */
  dumpTimeoutSeconds: number;
  /** Load the finished backup into a throwaway database on the runner and check it. */
  restoreTest: boolean;
  /** Encrypt every archive and the dump to these age recipients as they are written. */
  encryptTo?: Recipient[];
  /**
   * Which of the complete dated backups in backup-dir to keep once this one is written
   * (restic's forget rules, UTC); all rules off: nothing is removed.
   */
  retention: RetentionPolicy;
  /** Set for a backup into a restic repository (destination restic) instead of backup-dir. */
  restic?: ResticPlan;
}

/** How restic checks the repository after a backup. */
export type ResticCheck =
  { kind: 'none' } | { kind: 'metadata' } | { kind: 'read-data-subset'; percent: number };

/** A restic repository as the destination, and how to reach it. */
export interface ResticPlan {
  /** Any restic repository string; a secret when it holds a URL's credentials. */
  repository: string;
  /** The repository password (a secret). */
  password: string;
  /** Backend variables given to restic: name → value (every value a secret). */
  env: Record<string, string>;
  /** Extended options (`key=value`), given as `-o`. */
  options: string[];
  /** `restic init` when there is no repository yet. */
  init: boolean;
  /** restore-test was on: there is no restore test of a repository yet (said, not run). */
  restoreTestAsked: boolean;
  check: ResticCheck;
}

/** How to reach a restic repository: what a restore from one needs of the ResticPlan. */
export type ResticAccessPlan = Pick<ResticPlan, 'repository' | 'password' | 'env' | 'options'>;

/** A backup in a restic repository, to restore. */
export interface RepositoryBackup {
  restic: ResticAccessPlan;
  /** A snapshot id (or its first characters), a backup name, or `latest`. */
  snapshot: string;
}

export interface PlanDefaults {
  backupDir: string;
  /** Where the backup goes when the input destination is not given (default directory). */
  destination?: 'directory' | 'artifact';
  /** The environment that restic-env's variable names are read from. */
  environment?: Record<string, string | undefined>;
  /**
   * The restore test's default: on in the action (a GitHub runner is a machine apart), off
   * on the command line (which often runs on the ownCloud server itself).
   */
  restoreTest?: boolean;
}

/** How an input is called where the user typed it: `input 'db-type'` or `option --db-type`. */
export type InputLabel = (name: InputName) => string;

export const actionLabel: InputLabel = (name) => `input '${name}'`;
export const cliLabel: InputLabel = (name) => `option --${name}`;

const KEY_TYPES = new Set([
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
  'ssh-dss',
]);

function words(value: string | undefined): string[] {
  return (value ?? '')
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

/** Where the instance is and how to reach its database: what backup and restore share. */
export interface InstancePlan {
  target: SshTarget | LocalTarget;
  /** The ownCloud installation directory (holds occ and config/). */
  owncloudDir: string;
  /** The data directory, when given; otherwise config.php's `datadirectory`. */
  dataDir?: string;
  database: DatabaseOverrides;
  /** Who runs occ; default the owner of config.php. */
  occUser?: string;
  /** The age identity (a secret) that decrypts an encrypted backup, newline-terminated. */
  identity?: string;
}

/** The validators every plan uses, bound to the raw inputs and their labels. */
function validators(raw: RawInputs, label: InputLabel) {
  const value = (name: InputName) => (raw[name] ?? '').trim();
  const fail = (name: InputName, message: string): never => {
    throw new InputError(`Invalid ${label(name)}: ${message}`);
  };

  const oneOf = <T extends string>(name: InputName, allowed: readonly T[], fallback: T): T => {
    const given = value(name).toLowerCase();
    if (given === '') return fallback;
    if (!(allowed as readonly string[]).includes(given))
      fail(name, `'${value(name)}' is not supported. Expected one of: ${allowed.join(', ')}.`);
    return given as T;
  };

  const integer = (name: InputName, min: number, max: number): number | undefined => {
    const given = value(name);
    if (given === '') return undefined;
    if (!/^\d+$/.test(given) || Number(given) < min || Number(given) > max)
      fail(name, `'${given}' is not a whole number from ${min} to ${max}.`);
    return Number(given);
  };

  const boolean = (name: InputName, fallback: boolean): boolean => {
    const given = value(name).toLowerCase();
    if (given === '') return fallback;
    if (['true', 'yes', 'on', '1'].includes(given)) return true;
    if (['false', 'no', 'off', '0'].includes(given)) return false;
    return fail(name, `'${value(name)}' is not a boolean. Expected true or false.`);
  };

  const absolutePath = (name: InputName, given: string): string => {
    if (given.includes('\0')) fail(name, 'the path contains a NUL byte.');
    if (given.startsWith('-')) fail(name, `'${given}' starts with '-'. Expected an absolute path.`);
    if (!isAbsolute(given)) fail(name, `'${given}' is not an absolute path.`);
    const normal = normalize(given);
    return normal.length > 1 ? normal.replace(/\/+$/, '') : normal;
  };

  const userName = (name: InputName): string | undefined => {
    const given = value(name);
    if (given && !/^[a-z_][a-z0-9_.-]*\$?$/i.test(given))
      fail(name, `'${given}' is not a user name.`);
    return given || undefined;
  };

  const password = (name: InputName): string | undefined => {
    // A password is taken as given (spaces are legitimate); only a missing one means "the default".
    const given = raw[name];
    if (given === undefined || given === '') return undefined;
    if (/[\r\n\0]/.test(given))
      fail(
        name,
        'the password contains a line break or NUL byte, which no database client accepts.',
      );
    return given;
  };

  return { value, fail, oneOf, integer, boolean, absolutePath, userName, password };
}

/** Validates the inputs that say where the instance is (shared by backup and restore). */
export function planInstance(raw: RawInputs, label: InputLabel = actionLabel): InstancePlan {
  const { value, fail, integer, absolutePath } = validators(raw, label);

  // --- Where the ownCloud server is -------------------------------------------------------
  const host = value(INPUTS.host);
  let target: SshTarget | LocalTarget = { kind: 'local' };
  // Without a host there is no SSH connection: an SSH setting would be silently unused.
  if (host === '')
    for (const name of SSH_ONLY)
      if (value(name) !== '')
        fail(
          name,
          `it only applies with ${label(INPUTS.host)} (without a host, the server is this machine and there is no SSH connection).`,
        );
  if (host !== '') {
    if (host.startsWith('-') || !/^[A-Za-z0-9._:[\]%_-]+$/.test(host))
      fail(INPUTS.host, `'${host}' is not a host name or IP address.`);
    const privateKey = (raw[INPUTS.sshKey] ?? '').replace(/\r\n/g, '\n').trim();
    if (privateKey === '')
      fail(INPUTS.sshKey, `a private key is required when ${label(INPUTS.host)} is set.`);
    if (
      !/^-----BEGIN [A-Z ]*PRIVATE KEY-----\n[\s\S]+\n-----END [A-Z ]*PRIVATE KEY-----$/.test(
        privateKey,
      )
    )
      fail(
        INPUTS.sshKey,
        'expected a private key in PEM/OpenSSH format (-----BEGIN ... PRIVATE KEY-----).',
      );
    if (
      /^Proc-Type: .*ENCRYPTED/m.test(privateKey) ||
      privateKey.includes('ENCRYPTED PRIVATE KEY') ||
      openSshKeyCipher(privateKey) !== 'none'
    )
      fail(INPUTS.sshKey, 'the private key is protected by a passphrase; use a key without one.');
    const knownHosts = words(raw[INPUTS.knownHosts]);
    if (knownHosts.length === 0)
      fail(
        INPUTS.knownHosts,
        `known_hosts lines for the host are required when ${label(INPUTS.host)} is set (get them with: ssh-keyscan -p PORT HOST).`,
      );
    knownHosts.forEach((line, index) => {
      const problem = knownHostsLineProblem(line);
      if (problem) fail(INPUTS.knownHosts, `line ${index + 1} ${problem}`);
    });
    const user = value(INPUTS.user) || 'root';
    if (!/^[a-z_][a-z0-9_.-]*\$?$/i.test(user)) fail(INPUTS.user, `'${user}' is not a user name.`);
    target = {
      kind: 'ssh',
      host: host.replace(/^\[(.*)\]$/, '$1'),
      port: integer(INPUTS.port, 1, 65535) ?? 22,
      user,
      privateKey: `${privateKey}\n`,
      knownHosts,
    };
  }

  // --- The instance -------------------------------------------------------------------------
  const owncloudDir = absolutePath(
    INPUTS.owncloudDir,
    value(INPUTS.owncloudDir) || '/var/www/owncloud',
  );
  const dataDir = value(INPUTS.dataDir)
    ? absolutePath(INPUTS.dataDir, value(INPUTS.dataDir))
    : undefined;

  // --- The database -------------------------------------------------------------------------
  const dbTypeGiven = value(INPUTS.dbType).toLowerCase();
  if (['oci', 'oracle'].includes(dbTypeGiven))
    fail(
      INPUTS.dbType,
      'Oracle (oci) is not supported. Expected one of: auto, mysql, pgsql, sqlite.',
    );
  const dbTypeAliases: Record<string, DatabaseType | 'auto'> = {
    '': 'auto',
    auto: 'auto',
    mysql: 'mysql',
    mariadb: 'mysql',
    pgsql: 'pgsql',
    postgres: 'pgsql',
    postgresql: 'pgsql',
    sqlite: 'sqlite',
    sqlite3: 'sqlite',
  };
  const dbType = dbTypeAliases[dbTypeGiven];
  if (dbType === undefined)
    fail(
      INPUTS.dbType,
      `'${value(INPUTS.dbType)}' is not supported. Expected one of: auto, mysql, pgsql, sqlite.`,
    );
  const database: DatabaseOverrides = {};
  if (dbType !== 'auto') database.type = dbType;
  if (value(INPUTS.dbHost)) database.host = value(INPUTS.dbHost);
  const dbPort = integer(INPUTS.dbPort, 1, 65535);
  if (dbPort !== undefined) database.port = dbPort;
  if (value(INPUTS.dbName)) database.name = value(INPUTS.dbName);
  if (value(INPUTS.dbUser)) database.user = value(INPUTS.dbUser);
  const password = validators(raw, label).password(INPUTS.dbPassword);
  if (password !== undefined) database.password = password;

  const occUser = validators(raw, label).userName(INPUTS.occUser);

  const identityText = (raw[INPUTS.identity] ?? '').replace(/\r\n/g, '\n').trim();
  if (identityText !== '') {
    const problem =
      identityProblem(identityText) ??
      (openSshKeyCipher(identityText) !== 'none' || /^Proc-Type: .*ENCRYPTED/m.test(identityText)
        ? 'it is a passphrase-protected SSH key, which cannot be used unattended; give an age key, or an SSH key without a passphrase kept as a secret'
        : undefined);
    if (problem) fail(INPUTS.identity, `${problem}.`);
  }

  return {
    target,
    owncloudDir,
    ...(dataDir ? { dataDir } : {}),
    database,
    ...(occUser ? { occUser } : {}),
    ...(identityText ? { identity: `${identityText}\n` } : {}),
  };
}

/** Validates everything up front and returns the plan, or throws one InputError. */
export function planBackup(
  raw: RawInputs,
  defaults: PlanDefaults,
  label: InputLabel = actionLabel,
): BackupPlan {
  const instance = planInstance(raw, label);
  const { value, fail, oneOf, integer, boolean, absolutePath } = validators(raw, label);

  // --- What to back up ----------------------------------------------------------------------
  const extraPaths = words(raw[INPUTS.extraPaths]).map((path) => {
    if (path.includes('\0')) fail(INPUTS.extraPaths, 'a path contains a NUL byte.');
    if (path.startsWith('-'))
      fail(INPUTS.extraPaths, `'${path}' starts with '-'. Expected a path.`);
    if (isAbsolute(path)) return absolutePath(INPUTS.extraPaths, path);
    const normal = normalize(path).replace(/\/+$/, '');
    if (normal === '.' || normal === '..' || normal.startsWith('../'))
      fail(INPUTS.extraPaths, `'${path}' is not a path inside ${label(INPUTS.owncloudDir)}.`);
    return normal;
  });
  const exclude = words(raw[INPUTS.exclude]);
  for (const pattern of exclude)
    if (pattern.startsWith('-') || pattern.startsWith('+'))
      fail(
        INPUTS.exclude,
        `'${pattern}' starts with '${pattern[0]}'. Expected an rsync pattern such as '*/thumbnails/'.`,
      );
  const installType = oneOf(INPUTS.installType, ['auto', 'package', 'tarball'] as const, 'auto');
  const keep = (name: InputName): number => {
    const given = value(name);
    if (given === '') return 0;
    if (!/^\d+$/.test(given) || !Number.isSafeInteger(Number(given)))
      fail(
        name,
        `'${given}' is not a whole number. Expected how many backups the rule keeps, 0 or more (0: the rule is off).`,
      );
    return Number(given);
  };
  const retention: RetentionPolicy = {
    last: keep(INPUTS.keepLast),
    daily: keep(INPUTS.keepDaily),
    weekly: keep(INPUTS.keepWeekly),
    monthly: keep(INPUTS.keepMonthly),
    yearly: keep(INPUTS.keepYearly),
  };

  const repository = planRestic(raw, defaults, label);
  return {
    ...instance,
    extraPaths,
    exclude,
    installType,
    maintenanceMode: boolean(INPUTS.maintenanceMode, true),
    compression: oneOf(INPUTS.compression, ['zstd', 'gzip'] as const, 'zstd'),
    backupDir: absolutePath(INPUTS.backupDir, value(INPUTS.backupDir) || defaults.backupDir),
    dumpTimeoutSeconds: integer(INPUTS.dumpTimeout, 1, 7 * 24 * 3600) ?? 600,
    restoreTest: repository.restic
      ? false
      : boolean(INPUTS.restoreTest, defaults.restoreTest ?? false),
    ...(value(INPUTS.encryptTo) !== ''
      ? { encryptTo: parseRecipients(raw[INPUTS.encryptTo]!, label(INPUTS.encryptTo)) }
      : {}),
    retention,
    ...repository,
  };
}

/** Backend variables restic-env may not name: the repository and its password have inputs. */
const RESTIC_OWN = /^RESTIC_(PASSWORD|PASSWORD_FILE|PASSWORD_COMMAND|REPOSITORY|REPOSITORY_FILE)$/;

/** destination and the restic-* inputs: a ResticPlan for destination restic, else none. */
function planRestic(
  raw: RawInputs,
  defaults: PlanDefaults,
  label: InputLabel,
): { restic?: ResticPlan } {
  const { value, fail, oneOf, boolean } = validators(raw, label);
  // The action's backup is an artifact, the command line's a backup directory.
  const own = defaults.destination ?? 'directory';
  const destination = oneOf(INPUTS.destination, [own, 'restic'] as const, own);
  const resticOnly = [
    INPUTS.resticRepository,
    INPUTS.resticPassword,
    INPUTS.resticEnv,
    INPUTS.resticOption,
    INPUTS.resticInit,
    INPUTS.check,
  ];
  if (destination === 'artifact')
    for (const name of KEEP_INPUTS)
      if (value(name) !== '' && value(name) !== '0')
        fail(
          name,
          `artifacts expire by retention-days; the keep-* inputs apply with ${label(INPUTS.destination)} restic.`,
        );
  // The action's defaults (check none, restic-init false) say nothing was asked for.
  const asked = (name: InputName) =>
    value(name) !== '' &&
    !(name === INPUTS.check && value(name).toLowerCase() === 'none') &&
    !(name === INPUTS.resticInit && value(name).toLowerCase() === 'false');
  if (destination !== 'restic') {
    for (const name of resticOnly)
      if (asked(name)) fail(name, `it only applies with ${label(INPUTS.destination)} restic.`);
    return {};
  }
  const access = planResticAccess(raw, defaults.environment, label, 'destination restic');
  if (value(INPUTS.encryptTo) !== '')
    fail(
      INPUTS.encryptTo,
      'a restic repository is encrypted by restic itself (restic-password); encrypt-to is for backup directories and artifacts.',
    );
  return {
    restic: {
      ...access,
      init: boolean(INPUTS.resticInit, false),
      // The action's default is true: not an error, said in the log.
      restoreTestAsked: boolean(INPUTS.restoreTest, false),
      check: resticCheck(value(INPUTS.check), (message) => fail(INPUTS.check, message)),
    },
  };
}

/** The restic-repository, restic-password, restic-env and restic-option inputs. */
function planResticAccess(
  raw: RawInputs,
  environment: NodeJS.ProcessEnv | undefined,
  label: InputLabel,
  /** What needs them, for the messages: `destination restic`, `snapshot`. */
  needs: string,
): ResticAccessPlan {
  const { fail } = validators(raw, label);
  const repository = (raw[INPUTS.resticRepository] ?? '').trim();
  if (repository === '')
    fail(
      INPUTS.resticRepository,
      `a restic repository is needed with ${needs} (a path on the host, or sftp:, rest:, s3:, b2:, azure:, gs:, rclone:).`,
    );
  if (/[\r\n\0]/.test(repository) || repository.startsWith('-'))
    fail(INPUTS.resticRepository, 'expected a restic repository string on one line.');
  const password = raw[INPUTS.resticPassword] ?? '';
  if (password === '')
    fail(INPUTS.resticPassword, `the repository password is needed with ${needs}.`);
  if (/[\r\n\0]/.test(password))
    fail(INPUTS.resticPassword, 'the password contains a line break or NUL byte.');
  const env: Record<string, string> = {};
  for (const name of words(raw[INPUTS.resticEnv]).flatMap((line) => line.split(/[\s,]+/))) {
    if (name === '') continue;
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      fail(INPUTS.resticEnv, `'${name}' is not an environment variable name.`);
    if (RESTIC_OWN.test(name))
      fail(
        INPUTS.resticEnv,
        `${name} is given by ${label(INPUTS.resticRepository)} or ${label(INPUTS.resticPassword)}, not as a backend variable.`,
      );
    const given = environment?.[name];
    if (given === undefined || given === '')
      fail(INPUTS.resticEnv, `the environment variable ${name} is not set (or empty).`);
    if (/[\r\n\0]/.test(given!))
      fail(INPUTS.resticEnv, `the value of ${name} contains a line break or NUL byte.`);
    env[name] = given!;
  }
  const options = words(raw[INPUTS.resticOption]);
  for (const option of options)
    if (!/^[^=\s-][^=\s]*=\S/.test(option))
      fail(
        INPUTS.resticOption,
        `'${option}' is not of the form key=value (e.g. sftp.connections=2).`,
      );
  return { repository, password, env, options };
}

/** `none`, `metadata` or `read-data-subset=N%` (0 < N ≤ 100). Pure. */
export function resticCheck(given: string, fail: (message: string) => never): ResticCheck {
  const text = given.trim().toLowerCase();
  if (text === '' || text === 'none') return { kind: 'none' };
  if (text === 'metadata') return { kind: 'metadata' };
  const subset = /^read-data-subset=(\d+(?:\.\d+)?)%$/.exec(text);
  if (subset && Number(subset[1]) > 0 && Number(subset[1]) <= 100)
    return { kind: 'read-data-subset', percent: Number(subset[1]) };
  return fail(
    `'${given}' is not supported. Expected none, metadata or read-data-subset=N% (N from 0 to 100, e.g. read-data-subset=5%).`,
  );
}

/** An account with the rights to drop and create databases (and users). */
export interface DatabaseAdmin {
  user: string;
  password: string;
}

export interface RestorePlan extends InstancePlan {
  // owncloudDir '' (and dataDir absent) mean: where the backup recorded them.
  /** The backup directory to restore (its manifest.json and archives); '' with repository. */
  backupPath: string;
  /** Instead of a backup directory: a backup in a restic repository, restored from the host. */
  repository?: RepositoryBackup;
  /**
   * Drops and recreates the database (and creates the instance's database user when it is
   * missing); without it the instance's own user empties the database instead.
   */
  dbAdmin?: DatabaseAdmin;
  /** Restore onto server code of another version than the backup's (package installs). */
  allowVersionMismatch: boolean;
  /** Move the current state aside before replacing it, to put it back if the restore fails. */
  safetyCopy: boolean;
  /** Remove the moved-aside state once the restore has succeeded. */
  discardPrevious: boolean;
  /**
   * Who owns the restored files when the archive's numeric owners do not exist on the
   * target (a new host); default the owner of the installation directory.
   */
  owner?: string;
}

/** Validates a restore's inputs up front; the backup path is the CLI's argument (or the download). */
export function planRestore(
  raw: RawInputs,
  backupPath: string,
  label: InputLabel = actionLabel,
  /** The environment that restic-env's variable names are read from. */
  environment?: NodeJS.ProcessEnv,
): RestorePlan {
  const instance = planInstance(raw, label);
  const { value, fail, boolean, userName, password } = validators(raw, label);
  const repository = planRepositoryBackup(raw, backupPath, label, environment);
  const adminUser = value(INPUTS.dbAdminUser);
  const adminPassword = password(INPUTS.dbAdminPassword);
  if (adminUser === '' && adminPassword !== undefined)
    fail(
      INPUTS.dbAdminPassword,
      `it only applies with ${label(INPUTS.dbAdminUser)} (the account that may drop and create databases).`,
    );
  if (adminUser.startsWith('-') || /[\0\r\n]/.test(adminUser))
    fail(INPUTS.dbAdminUser, `'${adminUser}' is not a database user name.`);
  const safetyCopy = boolean(INPUTS.safetyCopy, true);
  const discardPrevious = boolean(INPUTS.discardPrevious, false);
  if (!safetyCopy && discardPrevious)
    fail(
      INPUTS.discardPrevious,
      `it only applies with a safety copy (${label(INPUTS.safetyCopy)} is false: there is nothing to discard).`,
    );
  const owner = userName(INPUTS.owner);
  return {
    ...instance,
    // Empty: the installation directory the backup recorded.
    owncloudDir: value(INPUTS.owncloudDir) ? instance.owncloudDir : '',
    backupPath,
    ...(repository ? { repository } : {}),
    ...(adminUser ? { dbAdmin: { user: adminUser, password: adminPassword ?? '' } } : {}),
    allowVersionMismatch: boolean(INPUTS.allowVersionMismatch, false),
    safetyCopy,
    discardPrevious,
    ...(owner ? { owner } : {}),
  };
}

/** The restic inputs that only reach a repository (a restore takes no init, check or keep-*). */
const RESTIC_ACCESS_INPUTS: readonly InputName[] = [
  INPUTS.resticRepository,
  INPUTS.resticPassword,
  INPUTS.resticEnv,
  INPUTS.resticOption,
];

/** The snapshot input and how to reach its repository; none without snapshot. */
function planRepositoryBackup(
  raw: RawInputs,
  backupPath: string,
  label: InputLabel,
  environment: NodeJS.ProcessEnv | undefined,
): RepositoryBackup | undefined {
  const { value, fail } = validators(raw, label);
  const snapshot = value(INPUTS.snapshot);
  if (snapshot === '') {
    for (const name of RESTIC_ACCESS_INPUTS)
      if (value(name) !== '')
        fail(
          name,
          `it only applies with ${label(INPUTS.snapshot)} (a backup in a restic repository).`,
        );
    return undefined;
  }
  if (backupPath !== '')
    fail(
      INPUTS.snapshot,
      'a restore reads one backup: a backup directory, or a snapshot of a restic repository, not both.',
    );
  if (!/^(latest|[0-9a-f]{4,64}|owncloud-backup-[0-9A-Za-z_-]+)$/.test(snapshot))
    fail(
      INPUTS.snapshot,
      `'${snapshot}' is not a snapshot. Expected latest, a snapshot id (at least its first 4 hex digits, as owncloud-backup list shows it) or a backup name (owncloud-backup-…).`,
    );
  return {
    restic: planResticAccess(raw, environment, label, label(INPUTS.snapshot)),
    snapshot,
  };
}

/** Why a known_hosts line is malformed, or undefined when it is fine. */
export function knownHostsLineProblem(line: string): string | undefined {
  const fields = line.split(/\s+/);
  if (fields[0] === '@cert-authority' || fields[0] === '@revoked') fields.shift();
  const [hosts, keyType, key] = fields;
  if (!hosts || !keyType || !key)
    return `is not a known_hosts line. Expected 'HOST KEYTYPE BASE64KEY', e.g. '[cloud.example.com]:2222 ssh-ed25519 AAAA...'.`;
  if (!KEY_TYPES.has(keyType)) return `has an unknown key type '${keyType}'.`;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(key)) return 'has a key that is not base64.';
  // The key blob starts with its own type name: a cheap check that it is really a key.
  const blob = Buffer.from(key, 'base64');
  const nameLength = blob.length >= 4 ? blob.readUInt32BE(0) : 0;
  if (nameLength === 0 || blob.subarray(4, 4 + nameLength).toString('latin1') !== keyType)
    return `has a key that is not a ${keyType} key.`;
  return undefined;
}

/**
 * The cipher an OpenSSH-format private key is encrypted with ('none' when it has no
 * passphrase, and for keys in other formats, which say so in their PEM headers).
 */
export function openSshKeyCipher(privateKey: string): string {
  const match =
    /-----BEGIN OPENSSH PRIVATE KEY-----\n([\s\S]+?)\n-----END OPENSSH PRIVATE KEY-----/.exec(
      privateKey,
    );
  if (!match) return 'none';
  const blob = Buffer.from(match[1]!.replace(/\s+/g, ''), 'base64');
  const magic = 'openssh-key-v1\0';
  if (blob.subarray(0, magic.length).toString('latin1') !== magic || blob.length < magic.length + 4)
    return 'none';
  const length = blob.readUInt32BE(magic.length);
  return blob.subarray(magic.length + 4, magic.length + 4 + length).toString('latin1');
}

/** The areas of a user's home a single-path restore brings back. */
export const USER_AREAS = ['files', 'files_versions', 'files_trashbin'] as const;

/** A path of a user's, as the restore and the file cache name it. */
export interface UserPath {
  user: string;
  /** Relative to the user's home, e.g. `files/Documents/report.odt`. */
  path: string;
  area: (typeof USER_AREAS)[number];
}

/**
 * `USER/files/SOME/PATH` (or `USER/files_versions/...`, `USER/files_trashbin/...`) as a
 * user's path, or why it is not one. Pure.
 */
export function userPath(given: string): UserPath | string {
  const text = given.replace(/^\/+/, '').replace(/\/+$/, '');
  if (/[\0\r\n]/.test(text)) return 'it contains a NUL byte or a line break.';
  const parts = text.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..'))
    return `'${given}' has an empty, '.' or '..' part. Expected USER/files/SOME/PATH.`;
  const [user, area] = parts;
  if (!user || !area || !(USER_AREAS as readonly string[]).includes(area))
    return `'${given}' is not a path in a user's files. Expected USER/files/SOME/PATH (or USER/files_versions/..., USER/files_trashbin/...).`;
  return { user, path: parts.slice(1).join('/'), area: area as UserPath['area'] };
}

/** What happens to an item that exists in the instance already. */
export type ConflictRule =
  /** Replaced when the backup's is at least as new; a newer current file is skipped. */
  | 'keep-newer'
  /** Replaced in any case. */
  | 'overwrite'
  /** Nothing is replaced: the restored items go beside the current ones, renamed. */
  | 'as-copy';

export interface PathRestorePlan extends InstancePlan {
  /** owncloudDir '' means the installation directory the backup recorded. */
  backupPath: string;
  paths: UserPath[];
  conflicts: ConflictRule;
}

/** Validates a restore of single paths (restore --path). */
export function planPathRestore(
  raw: RawInputs,
  backupPath: string,
  label: InputLabel = actionLabel,
): PathRestorePlan {
  const instance = planInstance(raw, label);
  const { value, fail, boolean } = validators(raw, label);
  // The action passes every input with its default: only a value that says more refuses.
  const defaults: Partial<Record<InputName, string>> = {
    [INPUTS.safetyCopy]: 'true',
    [INPUTS.discardPrevious]: 'false',
    [INPUTS.allowVersionMismatch]: 'false',
  };
  for (const name of WHOLE_RESTORE_ONLY)
    if (
      (value(name) !== '' && value(name).toLowerCase() !== defaults[name]) ||
      (name === INPUTS.dbPassword && raw[name] !== undefined)
    )
      fail(
        name,
        `it applies to a restore of the whole instance, not of single paths (${label(INPUTS.path)}): the database stays as it is.`,
      );
  const paths: UserPath[] = [];
  for (const line of (raw[INPUTS.path] ?? '').split('\n')) {
    if (line.trim() === '') continue;
    const parsed = userPath(line.replace(/\r$/, ''));
    if (typeof parsed === 'string') fail(INPUTS.path, parsed);
    else paths.push(parsed);
  }
  if (paths.length === 0) fail(INPUTS.path, 'no path given. Expected USER/files/SOME/PATH.');
  const asCopy = boolean(INPUTS.asCopy, false);
  const overwrite = boolean(INPUTS.overwrite, false);
  if (asCopy && overwrite)
    fail(
      INPUTS.overwrite,
      `it contradicts ${label(INPUTS.asCopy)} (a copy beside the current items replaces nothing).`,
    );
  if (asCopy)
    for (const p of paths)
      if (p.area !== 'files')
        fail(
          INPUTS.asCopy,
          `it applies to paths in a user's files/ only; '${p.user}/${p.path}' is a ${p.area === 'files_versions' ? 'version' : 'trash bin entry'}, whose name ownCloud gives it.`,
        );
  if (paths.some((p) => p.path === p.area && p.area === 'files' && asCopy))
    fail(INPUTS.asCopy, "a user's whole files/ cannot be restored as a copy; name a folder in it.");
  for (const a of paths)
    for (const b of paths)
      if (a !== b && a.user === b.user && (a.path === b.path || a.path.startsWith(`${b.path}/`)))
        fail(
          INPUTS.path,
          `'${a.user}/${a.path}' is ${a.path === b.path ? 'given twice' : `inside '${b.user}/${b.path}', which is given too`}.`,
        );
  return {
    ...instance,
    owncloudDir: value(INPUTS.owncloudDir) ? instance.owncloudDir : '',
    backupPath,
    paths,
    conflicts: asCopy ? 'as-copy' : overwrite ? 'overwrite' : 'keep-newer',
  };
}
