// Every command over SSH costs a round trip and a login shell on the host (a third of a
// second here, more over a long link): a backup asks few questions, each answering several
// things. An sshd that records every command its sessions run counts them; the budget below
// is what a backup needs today, so a change that adds commands fails here and has to say why.
import { chmodSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type RemoteCommand, type SshServer } from '../harness/sshd.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { buildSampleInstance } from '../sample/instance.ts';
import { runBackupCli } from '../support/backup-run.ts';
import { errorLine, explain, sshArgs } from '../support/cli-checks.ts';
import { finishedBackup } from '../support/restore.ts';

/**
 * Remote commands a whole backup of the sample may run: the connection's check; discover's
 * three (config.php's owner, its values, the data directory); the lock; preflight's five
 * (programs, database check, paths, package owners, size); the snapshot directory, the two
 * runs of the base pass and the delta's snapshot; the window's seven (maintenance mode read,
 * switched on and read back, delta, dump, row counts, encryption settings, switched off and
 * read back); the snapshot directory's removal.
 */
const BUDGET = 22;
/** Of them, running occ: maintenance mode read, switched on and read back, switched off and read back. */
const OCC_COMMANDS = 3;

let sshd: SshServer;
let instance: SampleInstance;
const scratch = makeScratchDir('remote-commands');
// occ runs as the instance's owner, who must be able to reach the instance.
chmodSync(scratch.path, 0o755);

beforeAll(async () => {
  sshd = await startSshd({ logCommands: true });
  instance = await buildSampleInstance({ database: { type: 'sqlite' }, root: scratch.path });
});
afterAll(async () => {
  await sshd?.stop();
  scratch.remove();
});

/** One line per command, for a failure's message. */
function listed(commands: RemoteCommand[]): string {
  return commands.map((c) => `  ${c.command.replace(/\s+/g, ' ').slice(0, 160)}`).join('\n');
}

describe('a backup over SSH', () => {
  it(`runs at most ${BUDGET} commands on the host, ${OCC_COMMANDS} of them occ, and opens the window only once maintenance mode is read back on`, async () => {
    const backupDir = join(scratch.path, 'backups');
    mkdirSync(backupDir);
    const run = await runBackupCli(
      ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir, ...sshArgs(sshd)],
      { secrets: [] },
    );
    expect(run.exitCode, explain(run)).toBe(0);
    finishedBackup(backupDir);
    const commands = sshd.commands();
    const all = listed(commands);
    // Every command the sessions ran ended, and ended well, before the backup did.
    expect(
      commands.filter((c) => c.exitCode === undefined),
      all,
    ).toEqual([]);
    expect(commands.length, all).toBeGreaterThan(5);
    expect(commands.length, all).toBeLessThanOrEqual(BUDGET);

    const occ = commands.filter((c) =>
      c.command.includes(`${instance.installDir}/occ maintenance:mode`),
    );
    expect(occ.length, listed(occ)).toBe(OCC_COMMANDS);
    // ... while occ itself still read the state before switching and after each switch.
    expect(instance.occCalls().map((c) => `${c.user} ${c.args.join(' ')}`)).toEqual([
      'www-data maintenance:mode',
      'www-data maintenance:mode --on',
      'www-data maintenance:mode',
      'www-data maintenance:mode --off',
      'www-data maintenance:mode',
    ]);
    // The dump starts once the switch on has been read back, and the switch off waits for it.
    const [, switchOn, switchOff] = occ;
    const dump = commands.filter((c) => c.command.includes('.dump'));
    expect(dump.length, all).toBe(1);
    expect(dump[0]!.start).toBeGreaterThan(switchOn!.end!);
    expect(switchOff!.start).toBeGreaterThan(dump[0]!.end!);
  });
});

describe('switching maintenance mode and reading it back in one command', () => {
  it('when occ cannot switch it on: fails naming the switch, reads nothing after it, and retries the switch off until it is read back off', async () => {
    const failing = await buildSampleInstance({
      database: { type: 'sqlite' },
      root: join(scratch.path, 'read-only config'),
    });
    // occ can read config.php but not write it: both switches fail (PHP stops, exit 255).
    const config = join(failing.installDir, 'config', 'config.php');
    const mode = statSync(config).mode & 0o7777;
    chmodSync(config, 0o444);
    const backupDir = join(scratch.path, 'read-only backups');
    mkdirSync(backupDir);
    let writableAgain = false;
    const run = await runBackupCli(
      ['--owncloud-dir', failing.installDir, '--backup-dir', backupDir],
      {
        secrets: [],
        // Once switching it off has failed once, config.php is writable again.
        onSpawn: (cli) => {
          let stderr = '';
          cli.stderr!.on('data', (chunk: Buffer) => {
            stderr += chunk.toString();
            if (!writableAgain && stderr.includes('Could not switch maintenance mode off yet')) {
              chmodSync(config, mode);
              writableAgain = true;
            }
          });
        },
      },
    );
    expect(run.exitCode, explain(run)).toBe(1);
    expect(writableAgain, explain(run)).toBe(true);
    expect(errorLine(run)).toMatch(
      /^owncloud-backup: error: occ maintenance:mode --on failed on this machine \(.*\) \(exit 255\)/,
    );
    expect(run.stderr).toMatch(
      /Could not switch maintenance mode off yet \(attempt 1\), retrying: occ maintenance:mode --off failed on this machine \(.*\) \(exit 255\)/,
    );
    expect(run.stderr).toContain('Maintenance mode switched off again (its prior state).');
    expect(failing.readConfig().maintenance).toBe(false);
    // occ logs the calls that finished: the state before, then the switch off that took
    // and its reading. No reading followed a failed switch.
    expect(failing.occCalls().map((c) => `${c.args.join(' ')} exit ${c.exit}`)).toEqual([
      'maintenance:mode exit 0',
      'maintenance:mode --off exit 0',
      'maintenance:mode exit 0',
    ]);
    expect(readdirSync(backupDir)).toEqual([]);
  });
});
