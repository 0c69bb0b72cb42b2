// Builds a sample ownCloud 10 (or Nextcloud) instance faithful to a real install: config.php
// in ownCloud's own format, a data directory with per-user trees and the files ownCloud keeps
// there, a custom theme, an `occ` stand-in, and a database whose core tables agree with the
// files. Small for unit tests; thousands of files and gigabytes for benchmarks.
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  openSync,
  writeSync,
  copyFileSync,
  linkSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import type { MariaDbServer } from '../harness/mariadb.ts';
import type { PostgresServer } from '../harness/postgres.ts';
import { systemUser } from '../harness/accounts.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { requireTool } from '../harness/tools.ts';
import {
  mysqlDatabase,
  pgsqlDatabase,
  runWithInput,
  sqliteDatabase,
  type SampleDatabase,
} from './database.ts';
import { createTables, insertRows, quoteName, type Engine, type SqlValue } from './schema.ts';
import {
  encryptedContent,
  fileKey,
  fileKeyDir,
  isEncryptedPath,
  keyId,
  MODULE,
  privateKeyFile,
  publicKeyFile,
  shareKey,
  type EncryptionMode,
} from './encryption.ts';

export type Flavour = 'owncloud' | 'nextcloud';

export type SampleDatabaseSpec =
  | { type: 'sqlite' }
  | { type: 'mysql'; server: MariaDbServer; via?: 'tcp' | 'socket' }
  | { type: 'pgsql'; server: PostgresServer };

export interface SampleOptions {
  database: SampleDatabaseSpec;
  flavour?: Flavour;
  /** Where to build; default a scratch dir removed when the process ends. */
  root?: string;
  /** Put the data directory beside the installation instead of inside it. */
  dataDirOutside?: boolean;
  dbName?: string;
  dbUser?: string;
  dbPassword?: string;
  tablePrefix?: string;
  /** Maintenance mode as the administrator left it. */
  maintenance?: boolean;
  /** Active custom theme; null for none. */
  theme?: string | null;
  /** The system user owning the instance (ownCloud runs as the web server's user). */
  owner?: string;
  /**
   * Apps installed from the app store into apps/, beside the shipped ones (as a tarball
   * install does by default); default none.
   */
  appStoreApps?: string[];
  /** Write Nextcloud's core/shipped.json, listing the shipped apps (apps/files). */
  shippedJson?: boolean;
  /** Extra files spread over the users, for benchmarks: count and total size in bytes. */
  bulk?: { files: number; bytes: number };
  /**
   * Server-side encryption on, with ownCloud 10's default module in this key mode: key files,
   * encrypted contents and file cache rows as ownCloud leaves them (see encryption.ts). Bulk
   * files stay unencrypted, as files written before encryption was enabled do.
   */
  encryption?: EncryptionMode;
}

/** An encrypted file's file cache row, as the sample wrote it. */
export interface EncryptedFileRow {
  /** The storage's string id, e.g. `home::alice`. */
  storage: string;
  /** Relative to the user's home, e.g. `files/Documents/Welcome.txt`. */
  path: string;
  fileid: number;
  /** The encryption version: 1 for a file written once, more for one written several times. */
  encrypted: number;
  /** The plain-text size (what ownCloud 10 keeps in `size` for an encrypted file). */
  size: number;
  /** 0 as ownCloud 10 leaves it; the plain-text size in rows left from ownCloud 8.0. */
  unencrypted_size: number;
  mimetype: string;
  /** Its size on disk (header and blocks): bigger than `size`. */
  onDiskSize: number;
  /** Its key directory relative to the data dir; a version uses its file's keys. */
  keyDir: string;
}

export interface SampleEncryption {
  mode: EncryptionMode;
  module: typeof MODULE;
  /** Set in appconfig in both modes (ownCloud's key manager sets it on first use). */
  masterKeyId: string;
  publicShareKeyId: string;
  /** Key pairs (paths relative to the data dir): the master key's or each user's, and the public-link key's. */
  keyPairs: { id: string; publicKey: string; privateKey: string }[];
  /** Every file cache row with encrypted <> 0, in fileid order. */
  encryptedFiles: EncryptedFileRow[];
}

export interface OccCall {
  time: number;
  user: string;
  args: string[];
  maintenanceBefore: boolean | null;
  maintenanceAfter: boolean | null;
  exit: number;
}

export interface SampleInstance {
  readonly flavour: Flavour;
  readonly root: string;
  readonly installDir: string;
  readonly configPath: string;
  readonly dataDir: string;
  readonly occCallsPath: string;
  readonly owner: { name: string; uid: number; gid: number };
  /** The config.php values as written. */
  readonly config: Record<string, unknown>;
  readonly dbPassword: string;
  readonly users: string[];
  readonly database: SampleDatabase;
  /** Paths (relative to the data dir) of the file with an ACL and the one with an xattr. */
  readonly special: { acl: string; xattr: string; hardLinks: [string, string] };
  /** Server-side encryption, when the sample was built with it. */
  readonly encryption?: SampleEncryption;
  /** config.php as PHP reads it now. */
  readConfig(): Record<string, unknown>;
  /** Every `occ` call so far, in order. */
  occCalls(): OccCall[];
  remove(): void;
}

export const USERS = ['admin', 'alice', "o'brien"];

/** Names that break naive shell quoting, rsync arguments or encodings. */
export const HOSTILE_NAMES = [
  'Ünïcødé 日本語.txt',
  'with space.txt',
  `quote ' and " both.txt`,
  '$(touch pwned).txt',
  '`id` & ; | > <.md',
  '-leading-dash.txt',
  'back\\slash.txt',
  '*?[glob].txt',
];

/**
 * Encryption versions of the files written more than once (each write adds one): the
 * documents and some of the hostile names; every other encrypted file was written once.
 */
const ENCRYPTED_VERSIONS: Record<string, number> = {
  'files/Documents/Welcome.txt': 3,
  'files/Documents/Projects/2026/plan.md': 2,
  // The version was made when Welcome.txt was at its second write.
  'files_versions/Documents/Welcome.txt.v1764000000': 2,
  [`files/Ünïcødé dir/${HOSTILE_NAMES[0]}`]: 5,
  [`files/Ünïcødé dir/${HOSTILE_NAMES[2]}`]: 3,
  [`files/Ünïcødé dir/${HOSTILE_NAMES[3]}`]: 4,
  [`files/Ünïcødé dir/${HOSTILE_NAMES[6]}`]: 2,
};

/** A file last written by ownCloud 8.0's encryption app, which filled `unencrypted_size`. */
const LEGACY_ROWS = new Set(['files/Photos/.hidden-notes']);

const VERSIONS: Record<Flavour, string> = { owncloud: '10.15.0.2', nextcloud: '28.0.4.1' };

const HTACCESS = `# Generated by ownCloud
# Section for Apache 2.4 to 2.6
<IfModule mod_authz_core.c>
  Require all denied
</IfModule>
<IfModule mod_access_compat.c>
  Order Allow,Deny
  Deny from all
  Satisfy All
</IfModule>
# Section for Apache 2.2
<IfModule !mod_authz_core.c>
  <IfModule !mod_access_compat.c>
    <IfModule mod_authz_host.c>
      Order Allow,Deny
      Deny from all
    </IfModule>
    Satisfy All
  </IfModule>
</IfModule>
# Section for Apache 2.2 to 2.6
<IfModule mod_autoindex.c>
  IndexIgnore *
</IfModule>
`;

interface FileSpec {
  /** Relative to the user's home in the data dir, e.g. `files/Photos/a.jpg`. */
  path: string;
  /** A directory when neither content nor randomBytes is given. */
  content?: Buffer | string;
  /** A file of this many random bytes (like photos and archives, it does not compress). */
  randomBytes?: number;
}

function userTree(user: string, index: number): FileSpec[] {
  const tree: FileSpec[] = [
    { path: 'files' },
    { path: 'files/Documents' },
    { path: 'files/Documents/Welcome.txt', content: `Welcome to ownCloud, ${user}!\n` },
    { path: 'files/Documents/Projects' },
    { path: 'files/Documents/Projects/2026' },
    {
      path: 'files/Documents/Projects/2026/plan.md',
      content: '# Plan\n\n- back up\n- restore\n- compare\n',
    },
    { path: 'files/Photos' },
    { path: 'files/Photos/binary.jpg', content: randomBytes(64 * 1024 + index) },
    { path: 'files/Photos/.hidden-notes', content: 'a hidden file\n' },
    { path: 'files/Empty folder' },
    { path: 'files/Ünïcødé dir' },
    { path: 'files_trashbin' },
    { path: 'files_trashbin/files' },
    {
      path: 'files_trashbin/files/old.txt.d1764000000',
      content: 'deleted, but kept in the trash bin\n',
    },
    { path: 'files_versions' },
    { path: 'files_versions/Documents' },
    {
      path: 'files_versions/Documents/Welcome.txt.v1764000000',
      content: 'Welcome (an older version)\n',
    },
    { path: 'cache' },
  ];
  for (const name of HOSTILE_NAMES)
    tree.push({ path: `files/Ünïcødé dir/${name}`, content: `${name}\n` });
  return tree;
}

function bulkFiles(
  users: string[],
  bulk: { files: number; bytes: number },
): Map<string, FileSpec[]> {
  const byUser = new Map<string, FileSpec[]>(users.map((u) => [u, [{ path: 'files/Bulk' }]]));
  const average = bulk.files > 0 ? Math.floor(bulk.bytes / bulk.files) : 0;
  for (let i = 0; i < bulk.files; i++) {
    const user = users[i % users.length]!;
    const perUser = Math.floor(i / users.length);
    const dir = `files/Bulk/dir-${String(Math.floor(perUser / 200)).padStart(4, '0')}`;
    const list = byUser.get(user)!;
    if (perUser % 200 === 0) list.push({ path: dir });
    // Sizes vary from half to one and a half times the average, deterministically.
    const size = Math.max(1, Math.floor(average * (0.5 + ((i * 7919) % 1000) / 1000)));
    list.push({ path: `${dir}/file-${String(i).padStart(6, '0')}.bin`, randomBytes: size });
  }
  return byUser;
}

function writeRandomFile(path: string, size: number, buffer: Buffer): void {
  const fd = openSync(path, 'w');
  try {
    for (let written = 0; written < size;) {
      const chunk = buffer.subarray(0, Math.min(buffer.length, size - written));
      randomFillSync(chunk);
      written += writeSync(fd, chunk);
    }
  } finally {
    closeSync(fd);
  }
}

function mimetypeOf(name: string, isDir: boolean): string {
  if (isDir) return 'httpd/unix-directory';
  const ext = name.split('.').pop()?.toLowerCase();
  return (
    { txt: 'text/plain', md: 'text/markdown', jpg: 'image/jpeg', bin: 'application/octet-stream' }[
      ext ?? ''
    ] ?? 'application/octet-stream'
  );
}

function runPhp(code: string, input: string, ...args: string[]): string {
  return execFileSync(requireTool('php'), ['-r', code, '--', ...args], { input, encoding: 'utf8' });
}

/** config.php exactly as ownCloud writes it: `<?php\n$CONFIG = <var_export>;\n`. */
export function renderConfigPhp(config: Record<string, unknown>): string {
  return runPhp(
    'echo "<?php\\n\\$CONFIG = " . var_export(json_decode(stream_get_contents(STDIN), true), true) . ";\\n";',
    JSON.stringify(config),
  );
}

export function readConfigPhp(path: string): Record<string, unknown> {
  return JSON.parse(
    runPhp('$CONFIG = []; include $argv[1]; echo json_encode($CONFIG);', '', path),
  ) as Record<string, unknown>;
}

export async function buildSampleInstance(options: SampleOptions): Promise<SampleInstance> {
  const flavour = options.flavour ?? 'owncloud';
  const ownerName = options.owner ?? 'www-data';
  const owner = { name: ownerName, ...systemUser(ownerName) };
  const scratch = options.root ? undefined : makeScratchDir(`sample-${flavour}`);
  const root = options.root ?? scratch!.path;
  mkdirSync(root, { recursive: true });
  chmodSync(root, 0o755); // the owner must reach its installation and the occ call record
  const installDir = join(root, flavour);
  const dataDir = options.dataDirOutside ? join(root, `${flavour}-data`) : join(installDir, 'data');
  const configPath = join(installDir, 'config', 'config.php');
  const occCallsPath = join(root, 'occ-calls.jsonl');
  const prefix = options.tablePrefix ?? 'oc_';
  const dbName = options.dbName ?? flavour;
  const dbUser = options.dbUser ?? `${flavour}_db`;
  const dbPassword = options.dbPassword ?? randomBytes(18).toString('base64url');
  const theme = options.theme === undefined ? 'mytheme' : options.theme;
  const spec = options.database;
  const engine: Engine = spec.type;
  const users = USERS;

  // --- Installation directory: server code, occ, theme, an external app -------------------
  mkdirSync(join(installDir, 'config'), { recursive: true });
  for (const [path, content] of Object.entries({
    'index.php': '<?php\nrequire_once __DIR__ . "/lib/base.php";\n',
    'status.php': '<?php\n// status endpoint\n',
    'version.php': `<?php\n$OC_Version = [${VERSIONS[flavour].split('.').join(', ')}];\n$OC_VersionString = '${VERSIONS[flavour].split('.').slice(0, 3).join('.')}';\n`,
    'console.php': '<?php\n// console bootstrap\n',
    'lib/base.php': '<?php\nclass OC {}\n',
    'core/js/main.js': '/* core */\n',
    '3rdparty/composer/autoload.php': '<?php\n',
    'apps/files/appinfo/info.xml': '<?xml version="1.0"?>\n<info><id>files</id></info>\n',
    'config/config.sample.php': '<?php\n$CONFIG = [];\n',
    'config/.htaccess': '# Generated by ownCloud\ndeny from all\n',
    'apps-external/customapp/appinfo/info.xml':
      '<?xml version="1.0"?>\n<info><id>customapp</id></info>\n',
  })) {
    mkdirSync(dirname(join(installDir, path)), { recursive: true });
    writeFileSync(join(installDir, path), content);
  }
  for (const app of options.appStoreApps ?? []) {
    mkdirSync(join(installDir, 'apps', app, 'appinfo'), { recursive: true });
    writeFileSync(
      join(installDir, 'apps', app, 'appinfo', 'info.xml'),
      `<?xml version="1.0"?>\n<info><id>${app}</id></info>\n`,
    );
    writeFileSync(join(installDir, 'apps', app, 'appinfo', 'data.bin'), randomBytes(2000));
  }
  if (options.shippedJson)
    writeFileSync(
      join(installDir, 'core', 'shipped.json'),
      `${JSON.stringify({ shippedApps: ['files'], alwaysEnabled: ['files'] }, null, 4)}\n`,
    );
  copyFileSync(join(import.meta.dirname, 'occ.php'), join(installDir, 'occ'));
  if (theme) {
    const themeDir = join(installDir, 'themes', theme);
    mkdirSync(join(themeDir, 'core', 'css'), { recursive: true });
    mkdirSync(join(themeDir, 'core', 'img'), { recursive: true });
    writeFileSync(
      join(themeDir, 'defaults.php'),
      `<?php\nclass OC_Theme { public function getName() { return 'My Cloud'; } }\n`,
    );
    writeFileSync(
      join(themeDir, 'core', 'css', 'styles.css'),
      '#header { background: #0b3d5c; }\n',
    );
    writeFileSync(
      join(themeDir, 'core', 'img', 'logo.svg'),
      '<svg xmlns="http://www.w3.org/2000/svg"/>\n',
    );
  }

  // --- Data directory ---------------------------------------------------------------------
  mkdirSync(dataDir, { recursive: true });
  if (flavour === 'owncloud') writeFileSync(join(dataDir, '.ocdata'), '');
  else
    writeFileSync(
      join(dataDir, '.ncdata'),
      '# Nextcloud data directory\n# Do not change this file\n',
    );
  writeFileSync(join(dataDir, '.htaccess'), HTACCESS);
  writeFileSync(join(dataDir, 'index.html'), '');
  writeFileSync(
    join(dataDir, `${flavour}.log`),
    `{"reqId":"abc","level":1,"time":"2026-11-01T00:00:00+00:00","app":"core","message":"sample log line"}\n`,
  );
  const instanceId = `oc${randomBytes(5).toString('hex')}`;
  const keysDir = join(dataDir, 'files_encryption', 'OC_DEFAULT_MODULE');
  mkdirSync(keysDir, { recursive: true });
  const encryptionMode = options.encryption;
  const masterKeyId = keyId('master', instanceId);
  const publicShareKeyId = keyId('pubShare', instanceId);
  const keyPairs: SampleEncryption['keyPairs'] = [];
  /** Writes a key pair ownCloud's way; paths relative to the data dir. */
  const writeKeyPair = (dir: string, id: string, fileStem: string) => {
    mkdirSync(join(dataDir, dir), { recursive: true });
    const pair = {
      id,
      publicKey: `${dir}/${fileStem}.publicKey`,
      privateKey: `${dir}/${fileStem}.privateKey`,
    };
    writeFileSync(join(dataDir, pair.publicKey), publicKeyFile(`${instanceId}:${id}`));
    writeFileSync(join(dataDir, pair.privateKey), privateKeyFile(`${instanceId}:${id}`));
    keyPairs.push(pair);
  };
  if (encryptionMode) {
    const systemDir = `files_encryption/${MODULE}`;
    if (encryptionMode === 'master-key') writeKeyPair(systemDir, masterKeyId, masterKeyId);
    writeKeyPair(systemDir, publicShareKeyId, publicShareKeyId);
  } else {
    // Keys left from a time encryption was on: the backup keeps them like any file.
    writeFileSync(
      join(keysDir, `master_${randomBytes(4).toString('hex')}.privateKey`),
      randomBytes(1200),
    );
    writeFileSync(join(keysDir, 'pubShare_abc.publicKey'), randomBytes(450));
  }
  const encryptedFiles: EncryptedFileRow[] = [];
  if (flavour === 'owncloud') mkdirSync(join(dataDir, 'avatars'), { recursive: true });
  else mkdirSync(join(dataDir, `appdata_${instanceId}`, 'preview', '1', '2'), { recursive: true });

  const bulk = bulkFiles(users, options.bulk ?? { files: 0, bytes: 0 });
  const fill = Buffer.alloc(8 * 1024 * 1024);
  const filecache: Record<string, SqlValue>[] = [];
  const storages: Record<string, SqlValue>[] = [];
  const mimetypes = new Map<string, number>();
  const mimetypeId = (m: string) => {
    for (const part of [m.split('/')[0]!, m])
      if (!mimetypes.has(part)) mimetypes.set(part, mimetypes.size + 1);
    return mimetypes.get(m)!;
  };
  let fileId = 0;

  users.forEach((user, index) => {
    const home = join(dataDir, user);
    const storageId = index + 1;
    storages.push({ numeric_id: storageId, id: `home::${user}`, available: 1, last_checked: null });
    const entries: FileSpec[] = [
      { path: '' },
      ...userTree(user, index),
      ...(options.bulk ? bulk.get(user)! : []),
    ];
    if (flavour === 'owncloud')
      entries.push(
        { path: 'thumbnails' },
        { path: 'thumbnails/12' },
        { path: 'thumbnails/12/32-32.png', content: randomBytes(300) },
      );
    const ids = new Map<string, number>();
    const sizes = new Map<string, number>();
    /** Encrypted files: path → plain-text size (the file cache's `size`). */
    const plainSizes = new Map<string, number>();
    const encrypts = (entry: FileSpec) =>
      encryptionMode !== undefined && entry.content !== undefined && isEncryptedPath(entry.path);
    for (const entry of entries) {
      const full = join(home, entry.path);
      if (entry.randomBytes !== undefined) {
        writeRandomFile(full, entry.randomBytes, fill);
      } else if (entry.content !== undefined && encrypts(entry)) {
        const plain = Buffer.from(entry.content);
        plainSizes.set(entry.path, plain.length);
        const version = ENCRYPTED_VERSIONS[entry.path] ?? 1;
        writeFileSync(
          full,
          encryptedContent(plain, `${instanceId}:${user}:${entry.path}:${version}`),
        );
      } else if (entry.content !== undefined) {
        writeFileSync(full, entry.content);
      } else {
        mkdirSync(full, { recursive: true });
      }
    }
    // Files ownCloud keeps per user but outside its file cache.
    const userKeyDir = `${user}/files_encryption/${MODULE}`;
    if (encryptionMode === 'per-user-key') writeKeyPair(userKeyDir, user, user);
    else if (!encryptionMode) {
      const userKeys = join(dataDir, userKeyDir);
      mkdirSync(userKeys, { recursive: true });
      writeFileSync(join(userKeys, `${user}.privateKey`), randomBytes(1200));
      writeFileSync(join(userKeys, `${user}.publicKey`), randomBytes(450));
      const fileKeys = join(
        home,
        'files_encryption',
        'keys',
        'files',
        'Documents',
        'Welcome.txt',
        'OC_DEFAULT_MODULE',
      );
      mkdirSync(fileKeys, { recursive: true });
      writeFileSync(join(fileKeys, 'fileKey'), randomBytes(32));
    }
    // Each encrypted file's keys: the file key, sealed for the master key or for every user
    // with access (the owner; admin's shared Welcome.txt also for alice, its recipient).
    for (const path of plainSizes.keys()) {
      const dir = fileKeyDir(path);
      if (!dir) continue;
      mkdirSync(join(home, dir), { recursive: true });
      const seed = `${instanceId}:${user}:${path}`;
      writeFileSync(join(home, dir, 'fileKey'), fileKey(seed));
      const sealedFor =
        encryptionMode === 'master-key'
          ? [masterKeyId]
          : user === 'admin' && path === 'files/Documents/Welcome.txt'
            ? [user, 'alice']
            : [user];
      for (const id of sealedFor)
        writeFileSync(join(home, dir, `${id}.shareKey`), shareKey(seed, id));
    }

    // Sizes roll up from the deepest entries, as ownCloud's scanner does.
    for (const entry of [...entries].reverse()) {
      const stat = statSync(join(home, entry.path));
      const own = stat.isDirectory()
        ? (sizes.get(entry.path) ?? 0)
        : (plainSizes.get(entry.path) ?? stat.size);
      sizes.set(entry.path, own);
      if (entry.path !== '') {
        const parent = entry.path.includes('/')
          ? entry.path.slice(0, entry.path.lastIndexOf('/'))
          : '';
        sizes.set(parent, (sizes.get(parent) ?? 0) + own);
      }
    }
    for (const entry of entries) {
      const stat = statSync(join(home, entry.path));
      const isDir = stat.isDirectory();
      const name = entry.path.split('/').pop() ?? '';
      const mimetype = mimetypeOf(name, isDir);
      const parent =
        entry.path === ''
          ? -1
          : ids.get(
              entry.path.includes('/') ? entry.path.slice(0, entry.path.lastIndexOf('/')) : '',
            )!;
      const id = ++fileId;
      ids.set(entry.path, id);
      const plainSize = plainSizes.get(entry.path);
      const encrypted = plainSize === undefined ? 0 : (ENCRYPTED_VERSIONS[entry.path] ?? 1);
      const unencryptedSize =
        plainSize !== undefined && LEGACY_ROWS.has(entry.path) ? plainSize : 0;
      if (plainSize !== undefined) {
        const keyPath = fileKeyDir(
          entry.path.startsWith('files_versions/')
            ? `files/${entry.path.slice('files_versions/'.length).replace(/\.v\d+$/, '')}`
            : entry.path,
        );
        encryptedFiles.push({
          storage: `home::${user}`,
          path: entry.path,
          fileid: id,
          encrypted,
          size: plainSize,
          unencrypted_size: unencryptedSize,
          mimetype,
          onDiskSize: stat.size,
          keyDir: `${user}/${keyPath!}`,
        });
      }
      filecache.push({
        fileid: id,
        storage: storageId,
        path: entry.path,
        path_hash: createHash('md5').update(entry.path).digest('hex'),
        parent,
        name,
        mimetype: mimetypeId(mimetype),
        mimepart: mimetypeId(mimetype.split('/')[0]!),
        size: sizes.get(entry.path)!,
        mtime: Math.floor(stat.mtimeMs / 1000),
        storage_mtime: Math.floor(stat.mtimeMs / 1000),
        encrypted,
        unencrypted_size: unencryptedSize,
        etag: randomBytes(7).toString('hex'),
        permissions: isDir ? 31 : 27,
        // ownCloud's checksum is of what the client sent: the plain text.
        checksum: isDir
          ? ''
          : `SHA1:${createHash('sha1')
              .update(
                plainSize !== undefined
                  ? Buffer.from(entry.content!)
                  : readFileSync(join(home, entry.path)),
              )
              .digest('hex')}`,
      });
    }
  });

  // Metadata a backup must keep: an ACL, an extended attribute, a hard link.
  const special = {
    acl: 'alice/files/Documents/Welcome.txt',
    xattr: 'alice/files/Photos/binary.jpg',
    hardLinks: [
      'alice/files/Documents/Projects/2026/plan.md',
      'alice/files_versions/Documents/plan.md.v1764000001',
    ] as [string, string],
  };
  linkSync(join(dataDir, special.hardLinks[0]), join(dataDir, special.hardLinks[1]));
  execFileSync(requireTool('setfacl'), [
    '-m',
    'u:nobody:r--,g:adm:r--',
    join(dataDir, special.acl),
  ]);
  execFileSync(requireTool('setfattr'), [
    '-n',
    'user.owncloud.checksum',
    '-v',
    'sha1:sample',
    join(dataDir, special.xattr),
  ]);

  // --- config.php -------------------------------------------------------------------------
  let dbhost: string;
  if (spec.type === 'sqlite') dbhost = '';
  else if (spec.type === 'mysql' && spec.via === 'socket')
    dbhost = `localhost:${spec.server.socket}`;
  else dbhost = `${spec.server.host}:${spec.server.port}`;
  const config: Record<string, unknown> = {
    instanceid: instanceId,
    passwordsalt: randomBytes(22).toString('base64url'),
    secret: randomBytes(36).toString('base64url'),
    trusted_domains: ['localhost', 'cloud.example.com'],
    datadirectory: dataDir,
    'overwrite.cli.url': 'https://cloud.example.com',
    dbtype: spec.type === 'sqlite' ? 'sqlite3' : spec.type,
    version: VERSIONS[flavour],
    dbname: dbName,
    dbhost,
    dbtableprefix: prefix,
    ...(spec.type === 'mysql' ? { 'mysql.utf8mb4': true } : {}),
    dbuser: spec.type === 'sqlite' ? '' : dbUser,
    dbpassword: spec.type === 'sqlite' ? '' : dbPassword,
    logtimezone: 'UTC',
    installed: true,
    ...(theme ? { theme } : {}),
    maintenance: options.maintenance ?? false,
    loglevel: 2,
    // As ownCloud's documentation sets it up: shipped apps read-only, app-store apps apart.
    apps_paths: [
      { path: join(installDir, 'apps'), url: '/apps', writable: false },
      { path: join(installDir, 'apps-external'), url: '/apps-external', writable: true },
    ],
  };
  writeFileSync(configPath, renderConfigPhp(config));

  // --- Database -----------------------------------------------------------------------------
  const rowsByTable: [string, Record<string, SqlValue>[]][] = [
    [
      'storages',
      [
        ...storages,
        {
          numeric_id: users.length + 1,
          id: `local::${dataDir}/`,
          available: 1,
          last_checked: null,
        },
      ],
    ],
    ['mimetypes', [...mimetypes].map(([mimetype, id]) => ({ id, mimetype }))],
    ['filecache', filecache],
    [
      'users',
      users.map((uid) => ({
        uid,
        displayname: uid === 'admin' ? 'Administrator' : uid,
        password: `1|$2y$10$${randomBytes(16).toString('hex')}`,
      })),
    ],
    [
      'accounts',
      users.map((uid, i) => ({
        id: i + 1,
        email: `${uid.replace("'", '')}@example.com`,
        user_id: uid,
        lower_user_id: uid.toLowerCase(),
        display_name: uid,
        quota: 'default',
        last_login: 1764000000,
        backend: 'OC\\User\\Database',
        home: join(dataDir, uid),
        state: 1,
      })),
    ],
    ['groups', [{ gid: 'admin' }, { gid: 'staff' }]],
    [
      'group_user',
      [{ gid: 'admin', uid: 'admin' }, ...users.map((uid) => ({ gid: 'staff', uid }))],
    ],
    [
      'appconfig',
      [
        { appid: 'core', configkey: 'installedat', configvalue: '1764000000.123' },
        { appid: 'core', configkey: 'vendor', configvalue: flavour },
        { appid: 'files', configkey: 'enabled', configvalue: 'yes' },
        ...(encryptionMode
          ? [
              { appid: 'core', configkey: 'encryption_enabled', configvalue: 'yes' },
              { appid: 'core', configkey: 'default_encryption_module', configvalue: MODULE },
              { appid: 'encryption', configkey: 'enabled', configvalue: 'yes' },
              {
                appid: 'encryption',
                configkey: 'useMasterKey',
                configvalue: encryptionMode === 'master-key' ? '1' : '0',
              },
              // ownCloud's key manager sets all three ids on first use, in either mode.
              { appid: 'encryption', configkey: 'masterKeyId', configvalue: masterKeyId },
              { appid: 'encryption', configkey: 'publicShareKeyId', configvalue: publicShareKeyId },
              {
                appid: 'encryption',
                configkey: 'recoveryKeyId',
                configvalue: keyId('recoveryKey', instanceId),
              },
            ]
          : [{ appid: 'encryption', configkey: 'enabled', configvalue: 'no' }]),
        {
          appid: 'customapp',
          configkey: 'note',
          configvalue: `Unicode ✓, quotes ' " and a backslash \\ survive`,
        },
      ],
    ],
    [
      'preferences',
      users.map((uid) => ({ userid: uid, appid: 'core', configkey: 'lang', configvalue: 'de' })),
    ],
    [
      'mounts',
      users.map((uid, i) => ({
        id: i + 1,
        storage_id: i + 1,
        root_id: filecache.find((r) => r.storage === i + 1 && r.path === '')!.fileid ?? null,
        user_id: uid,
        mount_point: `/${uid}/`,
      })),
    ],
    [
      'share',
      [
        {
          id: 1,
          share_type: 0,
          share_with: 'alice',
          uid_owner: 'admin',
          uid_initiator: 'admin',
          item_type: 'file',
          item_source: '3',
          file_source: 3,
          file_target: '/Welcome.txt',
          permissions: 19,
          stime: 1764000000,
        },
      ],
    ],
  ];
  const sql = [
    createTables(engine, prefix),
    'BEGIN;',
    ...rowsByTable.map(([t, rows]) => insertRows(engine, prefix, t, rows)),
    'COMMIT;',
  ];
  if (engine === 'pgsql')
    for (const [table, column] of [
      ['storages', 'numeric_id'],
      ['mimetypes', 'id'],
      ['filecache', 'fileid'],
      ['accounts', 'id'],
      ['mounts', 'id'],
      ['share', 'id'],
    ] as const)
      sql.push(
        `SELECT setval(pg_get_serial_sequence('${prefix}${table}', '${column}'), (SELECT MAX(${quoteName(engine, column)}) FROM ${quoteName(engine, prefix + table)}));`,
      );

  let database: SampleDatabase;
  if (spec.type === 'sqlite') {
    const file = join(dataDir, `${dbName}.db`);
    await runWithInput(requireTool('sqlite3'), ['-batch', '-bail', file], sql.join('\n'));
    database = sqliteDatabase(file);
  } else if (spec.type === 'mysql') {
    await spec.server.createDatabase({ name: dbName, user: dbUser, password: dbPassword });
    await spec.server.query(sql.join('\n'), dbName);
    database = mysqlDatabase(spec.server, dbName);
  } else {
    await spec.server.createDatabase({ name: dbName, user: dbUser, password: dbPassword });
    // Tables belong to ownCloud's database user, as when ownCloud creates them.
    await spec.server.query(`SET ROLE ${quoteName('pgsql', dbUser)};\n${sql.join('\n')}`, dbName);
    database = pgsqlDatabase(spec.server, dbName);
  }

  // --- Ownership and modes as a package install leaves them ---------------------------------
  writeFileSync(occCallsPath, '');
  for (const path of [installDir, dataDir, occCallsPath])
    execFileSync('chown', ['-R', '--no-dereference', `${owner.uid}:${owner.gid}`, path]);
  execFileSync('chmod', ['-R', 'u+rwX,g+rX,g-w,o-rwx', dataDir]);
  chmodSync(configPath, 0o640);
  chmodSync(dataDir, 0o770);

  return {
    flavour,
    root,
    installDir,
    configPath,
    dataDir,
    occCallsPath,
    owner,
    config,
    dbPassword,
    users,
    database,
    special,
    ...(encryptionMode
      ? {
          encryption: {
            mode: encryptionMode,
            module: MODULE,
            masterKeyId,
            publicShareKeyId,
            keyPairs,
            encryptedFiles,
          },
        }
      : {}),
    readConfig: () => readConfigPhp(configPath),
    occCalls: () =>
      readFileSync(occCallsPath, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as OccCall),
    remove: () => (scratch ? scratch.remove() : rmSync(root, { recursive: true, force: true })),
  };
}
