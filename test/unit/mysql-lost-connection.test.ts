// A MySQL session lost while it worked (killed, or the server stopped) is told apart from a
// server that could not be reached at all: the first happens mid-load, the second up front.
import { describe, expect, it } from 'vitest';
import { engineFor } from '../../src/database/index.ts';
import type { DatabaseConnection } from '../../src/instance.ts';

const connection: DatabaseConnection = {
  type: 'mysql',
  name: 'owncloud',
  user: 'oc',
  password: 'x',
  tablePrefix: 'oc_',
  utf8mb4: true,
  host: '127.0.0.1',
  port: 3306,
};

describe('MySQL failures: not reached, or reached and lost', () => {
  it.each([
    [
      "ERROR 2002 (HY000): Can't connect to server on '127.0.0.1' (115)",
      'Could not reach the MySQL server 127.0.0.1:3306 (is it running?).',
    ],
    [
      "ERROR 2013 (HY000): Lost connection to server at 'handshake: reading initial communication packet', system error: 11",
      'Could not reach the MySQL server 127.0.0.1:3306 (is it running?).',
    ],
    [
      'ERROR 2013 (HY000) at line 212: Lost connection to server during query',
      'The MySQL server 127.0.0.1:3306 closed the connection while it was in use (the session was killed, or the server stopped).',
    ],
    [
      'ERROR 2006 (HY000) at line 40: Server has gone away',
      'The MySQL server 127.0.0.1:3306 closed the connection while it was in use (the session was killed, or the server stopped).',
    ],
  ])('%s', (stderr, message) => {
    expect(engineFor('mysql').explainFailure(stderr, connection)).toBe(message);
  });
});
