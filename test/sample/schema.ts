// ownCloud 10's core tables (the columns a backup must carry faithfully), in each engine's
// dialect, and SQL literals for filling them.

export type Engine = 'sqlite' | 'mysql' | 'pgsql';

type Column = [
  name: string,
  type: 'id' | 'int' | 'bigint' | 'text' | 'string' | 'small',
  extra?: string,
];

const TABLES: Record<string, Column[]> = {
  storages: [
    ['numeric_id', 'id'],
    ['id', 'string', 'UNIQUE'],
    ['available', 'small'],
    ['last_checked', 'int'],
  ],
  mimetypes: [
    ['id', 'id'],
    ['mimetype', 'string', 'UNIQUE'],
  ],
  filecache: [
    ['fileid', 'id'],
    ['storage', 'int'],
    ['path', 'text'],
    ['path_hash', 'string'],
    ['parent', 'bigint'],
    ['name', 'text'],
    ['mimetype', 'int'],
    ['mimepart', 'int'],
    ['size', 'bigint'],
    ['mtime', 'bigint'],
    ['storage_mtime', 'bigint'],
    ['encrypted', 'small'],
    ['unencrypted_size', 'bigint'],
    ['etag', 'string'],
    ['permissions', 'int'],
    ['checksum', 'string'],
  ],
  users: [
    ['uid', 'string', 'PRIMARY KEY'],
    ['displayname', 'string'],
    ['password', 'string'],
  ],
  accounts: [
    ['id', 'id'],
    ['email', 'string'],
    ['user_id', 'string', 'UNIQUE'],
    ['lower_user_id', 'string'],
    ['display_name', 'string'],
    ['quota', 'string'],
    ['last_login', 'int'],
    ['backend', 'string'],
    ['home', 'text'],
    ['state', 'small'],
  ],
  groups: [['gid', 'string', 'PRIMARY KEY']],
  group_user: [
    ['gid', 'string'],
    ['uid', 'string'],
  ],
  appconfig: [
    ['appid', 'string'],
    ['configkey', 'string'],
    ['configvalue', 'text'],
  ],
  preferences: [
    ['userid', 'string'],
    ['appid', 'string'],
    ['configkey', 'string'],
    ['configvalue', 'text'],
  ],
  mounts: [
    ['id', 'id'],
    ['storage_id', 'int'],
    ['root_id', 'bigint'],
    ['user_id', 'string'],
    ['mount_point', 'text'],
  ],
  share: [
    ['id', 'id'],
    ['share_type', 'small'],
    ['share_with', 'string'],
    ['uid_owner', 'string'],
    ['uid_initiator', 'string'],
    ['item_type', 'string'],
    ['item_source', 'string'],
    ['file_source', 'bigint'],
    ['file_target', 'text'],
    ['permissions', 'small'],
    ['stime', 'bigint'],
  ],
};

export const TABLE_NAMES = Object.keys(TABLES);

function columnType(engine: Engine, type: Column[1]): string {
  switch (type) {
    case 'id':
      return {
        sqlite: 'INTEGER PRIMARY KEY AUTOINCREMENT',
        mysql: 'BIGINT AUTO_INCREMENT PRIMARY KEY',
        pgsql: 'BIGSERIAL PRIMARY KEY',
      }[engine];
    case 'int':
      return 'INTEGER';
    case 'bigint':
      return 'BIGINT';
    case 'small':
      return 'SMALLINT';
    case 'string':
      return engine === 'sqlite' ? 'TEXT' : 'VARCHAR(255)';
    case 'text':
      return engine === 'mysql' ? 'LONGTEXT' : 'TEXT';
  }
}

/** CREATE TABLE statements for every core table, with ownCloud's table prefix. */
export function createTables(engine: Engine, prefix: string): string {
  const statements = Object.entries(TABLES).map(([table, columns]) => {
    const body = columns.map(
      ([name, type, extra]) =>
        `  ${quoteName(engine, name)} ${columnType(engine, type)}${extra ? ` ${extra}` : ''}`,
    );
    const suffix =
      engine === 'mysql' ? ' ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin' : '';
    return `CREATE TABLE ${quoteName(engine, prefix + table)} (\n${body.join(',\n')}\n)${suffix};`;
  });
  statements.push(
    `CREATE INDEX ${quoteName(engine, `${prefix}fs_parent_name_hash`)} ON ${quoteName(engine, `${prefix}filecache`)} (parent);`,
  );
  return statements.join('\n');
}

export function quoteName(engine: Engine, name: string): string {
  return engine === 'mysql'
    ? `\`${name.replaceAll('`', '``')}\``
    : `"${name.replaceAll('"', '""')}"`;
}

export type SqlValue = string | number | null;

export function literal(engine: Engine, value: SqlValue): string {
  if (value === null) return 'NULL';
  if (typeof value === 'number') return String(value);
  const escaped =
    engine === 'mysql'
      ? value.replaceAll('\\', '\\\\').replaceAll("'", "''")
      : value.replaceAll("'", "''");
  return `'${escaped}'`;
}

/** Multi-row INSERTs, a few hundred rows a statement, inside one transaction. */
export function insertRows(
  engine: Engine,
  prefix: string,
  table: string,
  rows: Record<string, SqlValue>[],
): string {
  if (rows.length === 0) return '';
  const columns = Object.keys(rows[0]!);
  const out: string[] = [];
  for (let i = 0; i < rows.length; i += 500) {
    const values = rows
      .slice(i, i + 500)
      .map((row) => `(${columns.map((c) => literal(engine, row[c] ?? null)).join(',')})`)
      .join(',\n');
    out.push(
      `INSERT INTO ${quoteName(engine, prefix + table)} (${columns.map((c) => quoteName(engine, c)).join(',')}) VALUES\n${values};`,
    );
  }
  return out.join('\n');
}
