// A restic repository, driven through the restic binary on the host (over SSH or on this
// machine): open or create it, back up paths or a stream, list and forget snapshots, check
// it, read a file or a tree back. Every command is an argv; the secrets travel on stdin
// (src/host/guarded-restic.ts) and are removed from anything restic says before it becomes
// a message. restic runs with TZ=UTC, so that `--time` and forget's days, weeks, months and
// years are UTC ones, as the tool's retention rules are (src/retention.ts).
import type { Readable, Writable } from 'node:stream';
import { BackupError } from '../errors.ts';
import {
  guardedResticCommand,
  resticSecretLines,
  type ResticStdin,
} from '../host/guarded-restic.ts';
import { reached, type Host } from '../host/host.ts';
import { stderrTail, type ProcessResult } from '../host/process.ts';
import { isRetentionOff, type RetentionPolicy } from '../retention.ts';

export interface ResticAccess {
  /**
   * Any restic repository string (a path, sftp:, rest:, s3:, …). May hold credentials
   * (rest:https://user:pass@…): a secret, never in an argv.
   */
  repository: string;
  /** The repository password: a secret. */
  password: string;
  /**
   * Backend variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, B2_…, SSL_CERT_FILE, …):
   * name → value, every value treated as a secret.
   */
  env: Record<string, string>;
  /** Extended options, each `key=value`, given to restic as `-o key=value` (not secret). */
  options: string[];
}

export interface ResticProgram {
  /** Where restic is on the host. */
  path: string;
  /** `0.14.0` */
  version: string;
}

/** What `restic backup --json` reports when it is done. */
export interface SnapshotSummary {
  /** The new snapshot's id as restic reports it (restic 0.14: the short id). */
  id: string;
  filesNew: number;
  filesChanged: number;
  filesUnmodified: number;
  /** Bytes added to the repository (after deduplication and compression). */
  dataAdded: number;
  totalBytesProcessed: number;
}

export interface Snapshot {
  /** The full id. */
  id: string;
  /** RFC 3339, as restic gives it. */
  time: string;
  host: string;
  tags: string[];
  paths: string[];
  parent?: string;
}

/**
 * restic stored the snapshot, but some source files could not be read (restic's exit 3):
 * the snapshot lacks them. The summary is that of the stored snapshot.
 */
export class IncompleteSnapshotError extends BackupError {
  override name = 'IncompleteSnapshotError';
  /** The summary of the stored snapshot. */
  readonly summary: SnapshotSummary;
  /** restic's own lines about the files it could not read. */
  readonly resticLines: string[];
  constructor(message: string, summary: SnapshotSummary, resticLines: string[]) {
    super(message);
    this.summary = summary;
    this.resticLines = resticLines;
  }
}

/** A file streamed out of a snapshot (`restic dump`). */
export interface ResticStream {
  readonly stdout: Readable;
  /** Resolves when restic has ended well; rejects with the reason otherwise. */
  readonly done: Promise<void>;
  kill(): void;
}

const NOT_INSTALLED = (label: string) =>
  `restic is not installed on ${label}: install it (Debian/Ubuntu: apt-get install restic).`;

/** The version in `restic version`'s output (`restic 0.14.0 compiled with go1.19.8 on …`). */
export function parseResticVersion(output: string): string | undefined {
  return /^restic (\d+\.\d+\.\d+)\S*(?: \([^)]*\))? compiled with/m.exec(output)?.[1];
}

/** Finds restic on the host (through the prefix, as it will run) and reads its version. */
export async function findRestic(host: Host, prefix: string[]): Promise<ResticProgram> {
  const where = reached(host, await host.run([...prefix, 'sh', '-c', 'command -v restic']));
  const path = where.stdout.trim();
  if (where.exitCode !== 0 || !path.startsWith('/'))
    throw new BackupError(NOT_INSTALLED(host.label));
  const result = reached(host, await host.run([...prefix, path, 'version']));
  const version = parseResticVersion(result.stdout);
  if (result.exitCode !== 0 || !version)
    throw new BackupError(
      `restic at ${path} on ${host.label} did not tell its version (exit ${result.exitCode}): ${stderrTail(result.stderr) || stderrTail(result.stdout) || 'no output'}`,
    );
  return { path, version };
}

/** The repository string without the credentials of a URL (`rest:https://user:***@host/`). */
export function displayRepository(repository: string): string {
  return repository.replace(/^([a-z0-9]+:[a-z][a-z0-9+.-]*:\/\/)([^/]*)@/i, (_, scheme, info) => {
    const user = String(info).split(':')[0];
    return `${scheme}${user}:***@`;
  });
}

/** The password in a repository URL's user info (`rest:https://user:PASSWORD@host/`), if any. */
export function repositoryUrlPassword(repository: string): string | undefined {
  const info = /^[a-z0-9]+:[a-z][a-z0-9+.-]*:\/\/([^/]*)@/i.exec(repository)?.[1];
  return info?.includes(':') ? info.slice(info.indexOf(':') + 1) : undefined;
}

/**
 * Removes every secret from restic's words: the repository string becomes its display
 * form, and the password, the URL's credentials and the variables' values become `***`.
 */
export function redactResticOutput(text: string, access: ResticAccess): string {
  let out = text.replaceAll(access.repository, displayRepository(access.repository));
  const secrets = [access.password, ...Object.values(access.env)];
  const urlPassword = repositoryUrlPassword(access.repository);
  if (urlPassword) {
    secrets.push(urlPassword);
    try {
      secrets.push(decodeURIComponent(urlPassword));
    } catch {
      // not percent-encoded
    }
  }
  // Longest first, so that a secret holding another one is removed whole.
  for (const secret of secrets.filter((s) => s.length >= 3).sort((a, b) => b.length - a.length))
    out = out.replaceAll(secret, '***');
  return out;
}

/** restic's words, as quoted in a message: its last few meaningful lines. */
function resticSaid(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('{"message_type":"status"'));
  return lines.slice(-4).join(' / ');
}

/**
 * Whether restic's failure says that there is no repository at the location (and not that
 * it could not reach it): restic 0.14 says "unable to open config file" for both.
 */
export function isMissingRepository(stderr: string): boolean {
  if (!/unable to open config file/i.test(stderr)) return false;
  // local and sftp: the file is missing; rest: `<config/> does not exist`; s3: NoSuchKey.
  return (
    /no such file or directory|file does not exist|<config\/> does not exist|NoSuchKey|key does not exist|\b404\b/i.test(
      stderr,
    ) && !/connection refused|no such host|i\/o timeout|Access Key Id/i.test(stderr)
  );
}

/**
 * restic's stderr and exit code → one sentence: what failed, why, and what to do. `doing`
 * names the step (`Opening the restic repository`); the stderr must already be redacted.
 */
export function explainResticFailure(stderr: string, exitCode: number, doing: string): string {
  const said = resticSaid(stderr);
  const quote = said ? ` (restic: ${said})` : '';
  if (/wrong password or no key found/i.test(stderr))
    return `${doing} failed: the restic password is wrong for this repository (restic: wrong password or no key found). Check restic-password.`;
  const locked = /repository is already locked (?:exclusively )?by (PID \d+ on \S+)/i.exec(stderr);
  if (locked || /unable to create lock in backend/i.test(stderr)) {
    const created = /lock was created at ([^\n(]+?)\s*\(/.exec(stderr)?.[1];
    return `${doing} failed: another restic run holds a lock on the repository${locked ? ` (${locked[1]}${created ? `, since ${created}` : ''})` : ''}. Wait for it to finish; if no run is active, the lock is stale: remove it with restic unlock.`;
  }
  if (isMissingRepository(stderr))
    return `${doing} failed: there is no restic repository at that location. Set restic-init to true to create it, or check restic-repository.`;
  if (/unexpected HTTP response \((401|403)\)/i.test(stderr))
    return `${doing} failed: the REST server refused the credentials (HTTP ${/\((40[13])\)/.exec(stderr)![1]}). Check the user and password in restic-repository.`;
  if (
    /signature we calculated does not match|SignatureDoesNotMatch|Access Key Id you provided does not exist|InvalidAccessKeyId|Access Denied|AccessDenied/i.test(
      stderr,
    )
  )
    return `${doing} failed: the S3 server refused the credentials${quote}. Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the restic environment.`;
  if (/x509:|certificate signed by unknown authority|tls: /i.test(stderr))
    return `${doing} failed: the repository server's TLS certificate is not trusted${quote}. Give its CA with SSL_CERT_FILE in the restic environment, or check the address.`;
  if (/unable to start the sftp session|ssh command exited|sftp:.*EOF/i.test(stderr))
    return `${doing} failed: restic could not start an SFTP session to the repository's server${quote}. Check that its SSH server is reachable and accepts the key, and the sftp.command option if one is given.`;
  if (/no such host|server misbehaving/i.test(stderr))
    return `${doing} failed: the repository's server name could not be resolved${quote}. Check the host in restic-repository.`;
  if (
    /connection refused|network is unreachable|no route to host|i\/o timeout|connection reset/i.test(
      stderr,
    )
  )
    return `${doing} failed: the repository's server could not be reached${quote}. Check that it runs and that the address in restic-repository is right.`;
  if (/snapshot is empty/i.test(stderr))
    return `${doing} failed: there was no data (restic 0.14 refuses to store an empty snapshot from stdin).`;
  return `${doing} failed (restic exit ${exitCode})${quote || ': no message'}.`;
}

interface RawSummary {
  message_type: string;
  snapshot_id?: string;
  files_new?: number;
  files_changed?: number;
  files_unmodified?: number;
  data_added?: number;
  total_bytes_processed?: number;
}

/** The summary message of `restic backup --json` (its last line of that type). */
export function parseBackupSummary(stdout: string): SnapshotSummary | undefined {
  let found: RawSummary | undefined;
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const message = JSON.parse(line) as RawSummary;
      if (message.message_type === 'summary') found = message;
    } catch {
      // not one of restic's JSON lines
    }
  }
  if (!found?.snapshot_id) return undefined;
  return {
    id: found.snapshot_id,
    filesNew: found.files_new ?? 0,
    filesChanged: found.files_changed ?? 0,
    filesUnmodified: found.files_unmodified ?? 0,
    dataAdded: found.data_added ?? 0,
    totalBytesProcessed: found.total_bytes_processed ?? 0,
  };
}

/** restic's `error` messages of a backup (one per file it could not read), as `item: what`. */
export function parseBackupErrors(output: string): string[] {
  const errors: string[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) {
      if (/^(error|warning): /i.test(line.trim()) && !/at least one source file/i.test(line))
        errors.push(line.trim());
      continue;
    }
    try {
      const message = JSON.parse(line) as {
        message_type?: string;
        item?: string;
        during?: string;
        error?: { Op?: string; Err?: unknown } | string;
      };
      if (message.message_type !== 'error') continue;
      const op = typeof message.error === 'object' ? message.error.Op : undefined;
      errors.push(
        `${message.item ?? '?'}: ${op ? `${op} failed` : 'failed'} during ${message.during ?? 'backup'}`,
      );
    } catch {
      // not JSON after all
    }
  }
  return errors;
}

interface RawSnapshot {
  id: string;
  time: string;
  hostname: string;
  tags?: string[] | null;
  paths?: string[] | null;
  parent?: string;
}

function toSnapshot(raw: RawSnapshot): Snapshot {
  return {
    id: raw.id,
    time: raw.time,
    host: raw.hostname,
    tags: raw.tags ?? [],
    paths: raw.paths ?? [],
    ...(raw.parent ? { parent: raw.parent } : {}),
  };
}

/** `restic snapshots --json`. */
export function parseSnapshots(stdout: string): Snapshot[] {
  return (JSON.parse(stdout.trim() || '[]') as RawSnapshot[]).map(toSnapshot);
}

/** `restic forget --json`: the groups, each with the snapshots kept and removed. */
export function parseForget(stdout: string): { kept: string[]; removed: string[] } {
  // With --prune, prune's text follows the JSON on stdout.
  const line = stdout.split('\n').find((l) => l.startsWith('['));
  const groups = JSON.parse(line ?? '[]') as {
    keep?: RawSnapshot[] | null;
    remove?: RawSnapshot[] | null;
  }[];
  return {
    kept: groups.flatMap((g) => (g.keep ?? []).map((s) => s.id)),
    removed: groups.flatMap((g) => (g.remove ?? []).map((s) => s.id)),
  };
}

/** forget's `--keep-*` options for a policy (its rules that are on). */
export function keepOptions(policy: RetentionPolicy): string[] {
  const rules: [keyof RetentionPolicy, string][] = [
    ['last', '--keep-last'],
    ['daily', '--keep-daily'],
    ['weekly', '--keep-weekly'],
    ['monthly', '--keep-monthly'],
    ['yearly', '--keep-yearly'],
  ];
  return rules.flatMap(([field, option]) =>
    policy[field] > 0 ? [option, String(policy[field])] : [],
  );
}

/** `--time`'s form (restic reads it in its local time zone, UTC here). */
export function resticTime(time: Date): string {
  return time.toISOString().slice(0, 19).replace('T', ' ');
}

function tagOptions(tags: readonly string[]): string[] {
  for (const tag of tags)
    if (tag === '' || tag.includes(','))
      throw new BackupError(
        `The restic tag '${tag}' is empty or holds a comma, which restic splits on.`,
      );
  return tags.flatMap((tag) => ['--tag', tag]);
}

/** `--tag a,b`: the snapshots that carry all of these tags. */
function tagFilter(tags: readonly string[] | undefined): string[] {
  if (!tags || tags.length === 0) return [];
  tagOptions(tags);
  return ['--tag', tags.join(',')];
}

export class ResticRepository {
  private readonly secretLines: string;
  private readonly host: Host;
  private readonly access: ResticAccess;
  private readonly program: ResticProgram;
  private readonly prefix: string[];

  constructor(
    host: Host,
    access: ResticAccess,
    program: ResticProgram,
    /** argv prefix that lets restic read every file, e.g. ['sudo', '-n'], or []. */
    prefix: string[],
  ) {
    this.host = host;
    this.access = access;
    this.program = program;
    this.prefix = prefix;
    for (const option of access.options)
      if (!/^[^=\s]+=/.test(option) || /[\r\n\0]/.test(option))
        throw new BackupError(
          `The restic option '${option}' is not of the form key=value (e.g. sftp.connections=2).`,
        );
    this.secretLines = resticSecretLines({
      repository: access.repository,
      password: access.password,
      env: { TZ: 'UTC', ...access.env },
    });
  }

  /** restic's version on the host. */
  get version(): string {
    return this.program.version;
  }

  /** The repository as messages may name it (without credentials). */
  get label(): string {
    return displayRepository(this.access.repository);
  }

  private argv(args: readonly string[], stdin: ResticStdin): string[] {
    const restic = [
      this.program.path,
      ...this.access.options.flatMap((option) => ['-o', option]),
      ...args,
    ];
    return [
      ...this.prefix,
      ...guardedResticCommand(restic, stdin, {
        ...this.access,
        env: { TZ: 'UTC', ...this.access.env },
      }),
    ];
  }

  private redact(text: string): string {
    return redactResticOutput(text, this.access);
  }

  private failure(result: ProcessResult, doing: string): BackupError {
    const said = this.redact(result.stderr || result.stdout);
    return new BackupError(
      explainResticFailure(said, result.exitCode, `${doing} (${this.label} on ${this.host.label})`),
    );
  }

  /** Runs a restic command to its end; stdin stays open and is watched by the wrapper. */
  private async execute(
    args: readonly string[],
    doing: string,
    signal?: AbortSignal,
  ): Promise<ProcessResult> {
    const result = reached(
      this.host,
      await this.host.run(this.argv(args, 'watch'), {
        input: this.secretLines,
        keepStdinOpen: true,
        ...(signal ? { signal } : {}),
      }),
    );
    if (result.exitCode !== 0) throw this.failure(result, doing);
    return result;
  }

  /**
   * Opens the repository (`restic cat config`); when there is none: `restic init` if
   * `init`, else a BackupError saying so that names the input restic-init.
   */
  async open(init: boolean, o: { signal?: AbortSignal } = {}): Promise<'opened' | 'created'> {
    const doing = 'Opening the restic repository';
    const result = reached(
      this.host,
      await this.host.run(this.argv(['cat', 'config'], 'watch'), {
        input: this.secretLines,
        keepStdinOpen: true,
        ...(o.signal ? { signal: o.signal } : {}),
      }),
    );
    if (result.exitCode === 0) return 'opened';
    if (!isMissingRepository(result.stderr)) throw this.failure(result, doing);
    if (!init)
      throw new BackupError(
        `There is no restic repository at ${this.label} (seen from ${this.host.label}). Set restic-init to true to create it there, or check restic-repository.`,
      );
    await this.execute(['init'], 'Creating the restic repository', o.signal);
    return 'created';
  }

  /** `restic backup` of paths on the host; exit 3 (files not read) is IncompleteSnapshotError. */
  async backupPaths(o: {
    paths: string[];
    excludes: string[];
    tags: string[];
    hostname: string;
    parent?: string;
    time?: Date;
    /** Do not cross file system boundaries (as the tar passes). */
    oneFileSystem?: boolean;
    signal?: AbortSignal;
  }): Promise<SnapshotSummary> {
    if (o.paths.length === 0) throw new BackupError('Nothing to back up: no paths were given.');
    const args = [
      ...['backup', '--json', '--quiet', '--host', o.hostname, ...tagOptions(o.tags)],
      ...o.excludes.flatMap((exclude) => ['--exclude', exclude]),
      ...(o.parent ? ['--parent', o.parent] : []),
      ...(o.time ? ['--time', resticTime(o.time)] : []),
      ...(o.oneFileSystem ? ['--one-file-system'] : []),
      '--',
      ...o.paths,
    ];
    const doing = 'Backing up files into the restic repository';
    const result = reached(
      this.host,
      await this.host.run(this.argv(args, 'watch'), {
        input: this.secretLines,
        keepStdinOpen: true,
        ...(o.signal ? { signal: o.signal } : {}),
      }),
    );
    return this.summaryOf(result, doing);
  }

  private summaryOf(result: ProcessResult, doing: string): SnapshotSummary {
    const summary = parseBackupSummary(result.stdout);
    if (result.exitCode === 3 && summary) {
      const lines = parseBackupErrors(this.redact(`${result.stdout}\n${result.stderr}`));
      throw new IncompleteSnapshotError(
        `restic stored snapshot ${summary.id} in ${this.label}, but some source files could not be read, so it lacks them (restic exit 3): ${lines.slice(0, 5).join('; ') || 'restic named none'}${lines.length > 5 ? `; and ${lines.length - 5} more` : ''}. Check the permissions of those files (or give the tool a way to read them, e.g. sudo).`,
        summary,
        lines,
      );
    }
    if (result.exitCode !== 0) throw this.failure(result, doing);
    if (!summary)
      throw new BackupError(
        `${doing} (${this.label}): restic ended well but reported no summary: ${stderrTail(this.redact(result.stdout)) || 'no output'}`,
      );
    return summary;
  }

  /**
   * `restic backup --stdin --stdin-filename NAME`: the caller writes the data to `stdin`
   * and ends it; `done` gives the summary. The end of stdin is the end of the data: a
   * caller whose data source failed must forget the snapshot (or abort through `signal`
   * before ending stdin, which stops restic without a snapshot).
   */
  backupStdin(o: {
    filename: string;
    tags: string[];
    hostname: string;
    time?: Date;
    signal?: AbortSignal;
  }): { stdin: Writable; done: Promise<SnapshotSummary> } {
    if (o.filename === '' || o.filename.includes('/') || /[\r\n\0]/.test(o.filename))
      throw new BackupError(
        `The file name '${o.filename}' for a restic stdin backup is not valid.`,
      );
    const args = [
      ...['backup', '--json', '--quiet', '--host', o.hostname, ...tagOptions(o.tags)],
      ...['--stdin', '--stdin-filename', o.filename],
      ...(o.time ? ['--time', resticTime(o.time)] : []),
    ];
    const started = this.host.stream(this.argv(args, 'data'), {
      input: this.secretLines,
      feedStdin: true,
      ...(o.signal ? { signal: o.signal } : {}),
    });
    const stdout = collect(started.stdout);
    const done = Promise.all([started.done, stdout]).then(([result, out]) => {
      const finished = reached(this.host, { ...result, stdout: out });
      return this.summaryOf(finished, `Backing up ${o.filename} into the restic repository`);
    });
    return { stdin: started.stdin, done };
  }

  /** `restic snapshots --json`, of this host name and with all of these tags when given. */
  async snapshots(o: { tags?: string[]; hostname?: string } = {}): Promise<Snapshot[]> {
    const args = [
      'snapshots',
      '--json',
      ...tagFilter(o.tags),
      ...(o.hostname ? ['--host', o.hostname] : []),
    ];
    const result = await this.execute(args, 'Listing the snapshots of the restic repository');
    return parseSnapshots(result.stdout);
  }

  /** `restic forget ID… [--prune]`. */
  async forget(ids: string[], o: { prune?: boolean } = {}): Promise<void> {
    if (ids.length === 0) return;
    await this.execute(
      ['forget', ...(o.prune ? ['--prune'] : []), '--', ...ids],
      `Forgetting ${ids.length} snapshot(s) in the restic repository`,
    );
  }

  /**
   * `restic forget --tag … --host … --keep-… [--prune] --json`: applies the policy to the
   * snapshots of this host with all of these tags, each distinct set of tags one history
   * (`--group-by host,tags`). A policy with every rule off removes nothing and runs nothing.
   */
  async forgetByPolicy(o: {
    tags: string[];
    hostname: string;
    policy: RetentionPolicy;
    prune: boolean;
  }): Promise<{ kept: string[]; removed: string[] }> {
    if (isRetentionOff(o.policy)) {
      const all = await this.snapshots({ tags: o.tags, hostname: o.hostname });
      return { kept: all.map((s) => s.id), removed: [] };
    }
    const args = [
      ...['forget', '--json', ...tagFilter(o.tags), '--host', o.hostname],
      ...['--group-by', 'host,tags', ...keepOptions(o.policy)],
      ...(o.prune ? ['--prune'] : []),
    ];
    const result = await this.execute(args, 'Removing old snapshots from the restic repository');
    return parseForget(result.stdout);
  }

  /** `restic check`, reading this share of the data too when given (0 < percent ≤ 100). */
  async check(mode: { readDataSubsetPercent?: number } = {}): Promise<void> {
    const percent = mode.readDataSubsetPercent;
    if (percent !== undefined && !(percent > 0 && percent <= 100))
      throw new BackupError(
        `The share of data to read in restic check must be in (0, 100], not ${percent}.`,
      );
    await this.execute(
      ['check', ...(percent !== undefined ? ['--read-data-subset', `${percent}%`] : [])],
      `Checking the restic repository${percent !== undefined ? ` (reading ${percent}% of the data)` : ''}`,
    );
  }

  /** `restic dump SNAPSHOT PATH`: the file's bytes on stdout, streamed. */
  dump(snapshot: string, path: string, o: { signal?: AbortSignal } = {}): ResticStream {
    const started = this.host.stream(this.argv(['dump', '--', snapshot, path], 'watch'), {
      input: this.secretLines,
      keepStdinOpen: true,
      ...(o.signal ? { signal: o.signal } : {}),
    });
    const done = started.done.then((result) => {
      reached(this.host, result);
      if (result.exitCode !== 0)
        throw this.failure(
          result,
          `Reading ${path} of snapshot ${snapshot} from the restic repository`,
        );
    });
    return { stdout: started.stdout, done, kill: () => started.kill() };
  }

  /**
   * `restic restore SNAPSHOT --target DIR [--include …] [--verify]` on the host; with
   * verify, restic reads every restored file back and compares it with the repository.
   */
  async restore(
    snapshot: string,
    target: string,
    o: { include?: string[]; verify?: boolean; signal?: AbortSignal } = {},
  ): Promise<void> {
    await this.execute(
      [
        ...['restore', '--target', target],
        ...(o.include ?? []).flatMap((include) => ['--include', include]),
        ...(o.verify ? ['--verify'] : []),
        '--',
        snapshot,
      ],
      `Restoring snapshot ${snapshot} from the restic repository into ${target}`,
      o.signal,
    );
  }
}

/** All of a stream's bytes, as text (restic's JSON output: small). */
function collect(stream: Readable): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    stream.once('error', reject);
  });
}
