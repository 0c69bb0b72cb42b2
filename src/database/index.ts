// Picks the engine module by type: adding an engine adds a module and a line here.
import type { DatabaseType } from '../settings.ts';
import type { DatabaseEngine } from './engine.ts';
import { mysql } from './mysql.ts';
import { pgsql } from './pgsql.ts';
import { sqlite } from './sqlite.ts';

const ENGINES: Record<DatabaseType, DatabaseEngine> = { mysql, pgsql, sqlite };

export function engineFor(type: DatabaseType): DatabaseEngine {
  return ENGINES[type];
}

export type { CheckCommand, DatabaseEngine, DumpCommand, DumpContext, DumpTool } from './engine.ts';
