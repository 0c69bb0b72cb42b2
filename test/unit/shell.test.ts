import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { quoteArg, quoteCommand } from '../../src/host/shell.ts';

const HOSTILE = [
  "it's",
  '"double"',
  '$(touch pwned)',
  '`id`',
  '$HOME',
  '\\',
  '*',
  '~root',
  'a b\tc\nd',
  '',
  '-n',
  ';|&<>',
  '!',
  'ünï 日本',
  "'",
  "''",
];

/** What a real shell makes of the quoted command: each argument printed NUL-terminated. */
function throughShell(shell: string, args: string[]): string[] {
  const out = execFileSync(shell, ['-c', `printf '%s\\0' ${args.map(quoteArg).join(' ')}`], {
    encoding: 'utf8',
  });
  return out.split('\0').slice(0, -1);
}

describe('quoteArg', () => {
  it.each(['sh', 'bash'])('keeps every byte literal in %s', (shell) => {
    expect(throughShell(shell, HOSTILE)).toEqual(HOSTILE);
    // And any random bytes (except NUL, which no argv can hold).
    for (let i = 0; i < 50; i++) {
      const arg = randomBytes(40).toString('latin1').replaceAll('\0', '');
      expect(throughShell(shell, [arg])).toEqual([arg]);
    }
  });

  it('leaves plain words bare, so commands stay readable', () => {
    expect(quoteCommand(['php', '/var/www/owncloud/occ', 'maintenance:mode', '--on'])).toBe(
      'php /var/www/owncloud/occ maintenance:mode --on',
    );
    expect(quoteArg("it's")).toBe(`'it'\\''s'`);
  });

  it('refuses NUL bytes', () => {
    expect(() => quoteArg('a\0b')).toThrow('NUL');
  });
});
