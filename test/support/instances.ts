// Sample instances for the end-to-end tests: on a chosen engine, under a directory whose
// name breaks naive scripts, with a unique database and a password full of shell syntax.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { MariaDbServer } from '../harness/mariadb.ts';
import type { PostgresServer } from '../harness/postgres.ts';
import {
  buildSampleInstance,
  type SampleInstance,
  type SampleOptions,
} from '../sample/instance.ts';

export type Engine = 'sqlite' | 'mysql' | 'pgsql';

export interface DatabaseServers {
  mariadb: MariaDbServer;
  postgres: PostgresServer;
}

/** Every character that has broken a backup script somewhere. */
export const HOSTILE_DIR = `ünï côdé 'single' "double" $(touch pwned) ;&|`;

/** A password with quotes, command substitution, a backslash and a colon, unique per call. */
export function hostilePassword(): string {
  return `pw ${randomBytes(6).toString('hex')} 'q' "d" $(touch pwned) \`id\` \\ é:`;
}

export async function sampleOn(
  engine: Engine,
  servers: DatabaseServers,
  parent: string,
  id: number,
  options: Partial<SampleOptions> = {},
): Promise<SampleInstance> {
  const database =
    engine === 'sqlite'
      ? { type: engine }
      : engine === 'mysql'
        ? { type: engine, server: servers.mariadb }
        : { type: engine, server: servers.postgres };
  return buildSampleInstance({
    database,
    root: join(parent, `${id} ${HOSTILE_DIR}`),
    dbName: `owncloud_${id}`,
    dbUser: `oc_user_${id}`,
    dbPassword: hostilePassword(),
    ...options,
  } as SampleOptions);
}

/** Where holdDumpLock reaches the instance's database server as its administrator. */
export function lockTargetOf(engine: Engine, servers: DatabaseServers) {
  if (engine === 'mysql') return { socket: servers.mariadb.socket };
  if (engine === 'pgsql')
    return { socketDir: servers.postgres.socketDir, port: servers.postgres.port };
  return undefined;
}
