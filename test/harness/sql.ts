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
