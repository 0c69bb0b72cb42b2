// Quoting for the SQL the harness writes itself (test fixtures with hostile names).

/** A string literal for MariaDB/MySQL (backslash escapes on) and PostgreSQL. */
export function mysqlString(value: string): string {
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
}

export function pgString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

export function mysqlIdentifier(name: string): string {
  return `\`${name.replaceAll('`', '``')}\``;
}

export function pgIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * psql's --dbname for any database name: a bare name with `=` in it would be read as a
 * connection string, so it goes as the quoted value of `dbname=`.
 */
export function pgDbnameArg(name: string): string {
  let quoted = '';
  for (const c of name) quoted += c === '\\' || c === "'" ? `\\${c}` : c;
  return `--dbname=dbname='${quoted}'`;
}
