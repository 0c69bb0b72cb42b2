// The age recipients and identities the user gives: what is accepted, what each is recorded
// as in the manifest (fingerprints, as age-keygen -y and ssh-keygen -l show them), and the
// one message each mistake gets.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.ts';
import {
  describeRecipient,
  explainAgeFailure,
  identityProblem,
  parseRecipients,
  recipientRecords,
} from '../../src/steps/age.ts';

const dir = mkdtempSync(join(tmpdir(), 'age-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let keys = 0;
function sshKey(type: 'ed25519' | 'rsa'): { line: string; fingerprint: string } {
  const path = join(dir, `key-${type}-${keys++}`);
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', 'admin@example', '-f', path]);
  const fingerprint = execFileSync('ssh-keygen', ['-l', '-f', `${path}.pub`], {
    encoding: 'utf8',
  }).split(' ')[1]!;
  return { line: readFileSync(`${path}.pub`, 'utf8').trim(), fingerprint };
}

const LABEL = "input 'encrypt-to'";

describe('parseRecipients', () => {
  it('takes age keys and SSH keys, one per line, with comments and blank lines', () => {
    const age = execFileSync('sh', ['-c', 'age-keygen 2>/dev/null | age-keygen -y'], {
      encoding: 'utf8',
    }).trim();
    const ed = sshKey('ed25519');
    const rsa = sshKey('rsa');
    const recipients = parseRecipients(
      `# the admins\n${age}\n\n  ${ed.line}  \r\n${rsa.line}\n`,
      LABEL,
    );
    expect(recipientRecords(recipients)).toEqual([
      { type: 'X25519', fingerprint: age },
      { type: 'ssh-ed25519', fingerprint: ed.fingerprint },
      { type: 'ssh-rsa', fingerprint: rsa.fingerprint },
    ]);
    // age reads the key without its comment.
    expect(recipients[1]!.line).toBe(ed.line.replace(/ admin@example$/, ''));
    expect(describeRecipient(recipients[1]!)).toBe(`ssh-ed25519 ${ed.fingerprint}`);
    // Making an RSA key can take seconds on a loaded machine: the bound is for hangs.
  }, 120_000);

  it('refuses what is not a recipient, naming the input and the line', () => {
    const check = (text: string, message: RegExp) => {
      expect(() => parseRecipients(text, LABEL)).toThrow(InputError);
      expect(() => parseRecipients(text, LABEL)).toThrow(message);
    };
    check('', /no recipient in it/);
    check('# only a comment', /no recipient in it/);
    check('age1short', /^Invalid input 'encrypt-to': 'age1short' is not an age recipient/);
    check(
      'AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ',
      /that is an age secret key \(an identity\)/,
    );
    // A key blob that names another type than the line does.
    const ed = sshKey('ed25519').line.split(' ')[1];
    check(
      `age1${'q'.repeat(58)}\nssh-rsa ${ed}`,
      /\(line 2\): 'ssh-rsa AAAA.*' is not an age recipient/,
    );
    check('ecdsa-sha2-nistp256 AAAAE2VjZHNh', /is not an age recipient/);
  });
});

describe('identityProblem', () => {
  it('accepts age secret keys and SSH private keys', () => {
    const key = execFileSync('age-keygen', {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    expect(identityProblem(key)).toBeUndefined();
    const path = join(dir, 'id');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path]);
    expect(identityProblem(readFileSync(path, 'utf8'))).toBeUndefined();
  });

  it('says what is wrong with anything else', () => {
    expect(identityProblem('  \n# nothing\n')).toBe('it is empty');
    expect(identityProblem(`age1${'q'.repeat(58)}`)).toMatch(/holds a public key/);
    expect(identityProblem('hunter2')).toMatch(/neither an age secret key/);
  });
});

describe('explainAgeFailure', () => {
  it("turns age's complaints into what they mean for a backup", () => {
    const tail = '\nage: report unexpected or unhelpful errors at https://filippo.io/age/report\n';
    expect(
      explainAgeFailure(`age: error: no identity matched any of the recipients${tail}`, 1),
    ).toBe('the identity given is not one of the recipients it was encrypted to (wrong key)');
    expect(
      explainAgeFailure(`age: error: failed to read header: failed to parse header: EOF${tail}`, 1),
    ).toMatch(/^the encrypted data is cut short/);
    expect(explainAgeFailure('', 3)).toBe('age exit 3');
  });
});
