// What the files archive holds, proved against real installations: symlinked top-level
// paths (config/, the theme) are followed while links below them stay links; config.php is
// in every finished backup; app directories (apps_paths, app-store apps in apps/) are kept;
// the install type is detected from the host's package database (a real .deb); and a
// backup-dir inside what is copied is refused before anything is created.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import { renderConfigPhp, type SampleInstance, type SampleOptions } from '../sample/instance.ts';
import { runBackupCli, type CliRun } from '../support/backup-run.ts';
import { sampleOn, type DatabaseServers } from '../support/instances.ts';
import { archivePath, finishedBackup, unpackFiles, withoutMtime } from '../support/restore.ts';
import { diffTrees, snapshotTree } from '../support/tree.ts';
import { explain, errorLine, sshArgs as sshArgsFor } from '../support/cli-checks.ts';

let sshd: SshServer;
const scratch = makeScratchDir('trust-fileset');
// occ runs as the instance's owner, who must be able to reach the instance.
chmodSync(scratch.path, 0o755);
let counter = 0;

beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => {
  await sshd?.stop();
  scratch.remove();
});

/** A SQLite instance (no database server needed) under a hostile directory name. */
function sample(options: Partial<SampleOptions> = {}): Promise<SampleInstance> {
  return sampleOn('sqlite', {} as DatabaseServers, scratch.path, counter++, options);
}

function sshArgs(server: SshServer = sshd): string[] {
  return sshArgsFor(server);
}

/** Runs a backup of the instance into a fresh backup dir; returns the run and the dir. */
async function backup(
  instance: SampleInstance,
  args: string[] = [],
): Promise<{ run: CliRun; backupDir: string }> {
  const backupDir = join(instance.root, `backups ${counter++}`);
  mkdirSync(backupDir, { recursive: true });
  const run = await runBackupCli(
    ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir, ...args],
    { secrets: [] },
  );
  return { run, backupDir };
}

/** Backs up and unpacks the files archive; returns the unpacked tree and the manifest. */
async function backedUp(instance: SampleInstance, args: string[] = []) {
  const { run, backupDir } = await backup(instance, args);
  expect(run.exitCode, explain(run)).toBe(0);
  const finished = finishedBackup(backupDir);
  const restored = join(instance.root, `restored ${counter++}`);
  unpackFiles(archivePath(finished, 'files'), restored);
  return { run, restored, manifest: finished.manifest };
}

/** Moves a directory of the installation elsewhere and leaves a symlink in its place. */
function moveAndLink(instance: SampleInstance, relative: string): string {
  const elsewhere = join(instance.root, `elsewhere ${relative.replaceAll('/', '-')}`);
  renameSync(join(instance.installDir, relative), elsewhere);
  symlinkSync(elsewhere, join(instance.installDir, relative));
  return elsewhere;
}

describe('a symlinked top-level path', () => {
  it.each([
    ['package', 'local'],
    ['package', 'ssh'],
    ['tarball', 'local'],
    ['tarball', 'ssh'],
  ] as const)(
    'config/ linked to a directory elsewhere (%s install, %s): the archive holds owncloud/config/config.php, same bytes',
    async (installType, transport) => {
      const instance = await sample();
      const target = moveAndLink(instance, 'config');
      // A link below the top level stays a link.
      symlinkSync('config.sample.php', join(target, 'sample-link.php'));
      const { restored } = await backedUp(instance, [
        '--install-type',
        installType,
        ...(transport === 'ssh' ? sshArgs() : []),
      ]);
      const config = join(restored, 'owncloud', 'config');
      expect(lstatSync(config).isDirectory()).toBe(true);
      expect(readFileSync(join(config, 'config.php'))).toEqual(
        readFileSync(join(target, 'config.php')),
      );
      // The whole directory, modes and owners included (occ rewrote config.php: new mtime).
      expect(
        diffTrees(
          withoutMtime(await snapshotTree(target), 'config.php'),
          withoutMtime(await snapshotTree(config), 'config.php'),
        ),
      ).toEqual([]);
      expect(lstatSync(join(config, 'sample-link.php')).isSymbolicLink()).toBe(true);
      expect(readlinkSync(join(config, 'sample-link.php'))).toBe('config.sample.php');
      instance.remove();
    },
  );

  it.each(['package', 'tarball'] as const)(
    'the theme directory linked elsewhere (%s install): its content is in the archive under themes/mytheme',
    async (installType) => {
      const instance = await sample();
      const target = moveAndLink(instance, 'themes/mytheme');
      const { restored } = await backedUp(instance, ['--install-type', installType]);
      const theme = join(restored, 'owncloud', 'themes', 'mytheme');
      expect(lstatSync(theme).isDirectory()).toBe(true);
      expect(diffTrees(await snapshotTree(target), await snapshotTree(theme))).toEqual([]);
      expect(readFileSync(join(theme, 'core', 'css', 'styles.css'), 'utf8')).toBe(
        '#header { background: #0b3d5c; }\n',
      );
      instance.remove();
    },
  );

  it('an extra path that is a symlink to a file: the file itself, under its own name', async () => {
    const instance = await sample();
    const real = join(instance.root, 'site.conf');
    writeFileSync(real, `<VirtualHost *:443>\n  # ${randomBytes(8).toString('hex')}\n`);
    const link = join(instance.root, 'sites-enabled', 'owncloud.conf');
    mkdirSync(dirname(link));
    symlinkSync(real, link);
    const { restored } = await backedUp(instance, ['--extra-paths', link]);
    const copied = join(restored, 'extra', link);
    expect(lstatSync(copied).isFile()).toBe(true);
    expect(readFileSync(copied)).toEqual(readFileSync(real));
    instance.remove();
  });

  it("keeps symlinks inside a user's files as symlinks", async () => {
    const instance = await sample();
    const files = join(instance.dataDir, 'alice', 'files');
    symlinkSync('Documents/Welcome.txt', join(files, 'relative link'));
    symlinkSync('/etc/hostname', join(files, 'absolute link'));
    mkdirSync(join(instance.root, 'outside dir'));
    symlinkSync(join(instance.root, 'outside dir'), join(files, 'directory link'));
    const { restored } = await backedUp(instance);
    for (const [name, target] of [
      ['relative link', 'Documents/Welcome.txt'],
      ['absolute link', '/etc/hostname'],
      ['directory link', join(instance.root, 'outside dir')],
    ]) {
      const copied = join(restored, 'data', 'alice', 'files', name!);
      expect(lstatSync(copied).isSymbolicLink(), name).toBe(true);
      expect(readlinkSync(copied)).toBe(target);
    }
    instance.remove();
  });
});

describe('config.php in every finished backup', () => {
  it('fails clearly, leaving no backup and not touching maintenance mode, when config.php did not arrive', async () => {
    const instance = await sample();
    const { run, backupDir } = await backup(instance, ['--exclude', 'config.php']);
    expect(run.exitCode, explain(run)).toBe(1);
    expect(errorLine(run)).toBe(
      'owncloud-backup: error: config.php did not arrive in the backup (owncloud/config/config.php is missing, empty or a symlink after the copy): without it the backup cannot be restored. Check the exclude patterns.',
    );
    expect(readdirSync(backupDir)).toEqual([]);
    expect(instance.occCalls()).toEqual([]);
    instance.remove();
  });
});

describe('app directories', () => {
  it("a package install keeps apps_paths' apps-external/ byte for byte, and the manifest lists every app directory", async () => {
    const instance = await sample();
    expect(instance.readConfig().apps_paths).toEqual([
      { path: join(instance.installDir, 'apps'), url: '/apps', writable: false },
      { path: join(instance.installDir, 'apps-external'), url: '/apps-external', writable: true },
    ]);
    const { run, restored, manifest } = await backedUp(instance, ['--install-type', 'package']);
    expect(existsSync(join(restored, 'owncloud', 'apps-external'))).toBe(true);
    expect(
      diffTrees(
        await snapshotTree(join(instance.installDir, 'apps-external')),
        await snapshotTree(join(restored, 'owncloud', 'apps-external')),
      ),
    ).toEqual([]);
    expect(
      readFileSync(
        join(restored, 'owncloud', 'apps-external', 'customapp', 'appinfo', 'info.xml'),
        'utf8',
      ),
    ).toBe('<?xml version="1.0"?>\n<info><id>customapp</id></info>\n');
    expect(readdirSync(join(restored, 'owncloud')).sort()).toEqual([
      'apps-external',
      'config',
      'themes',
    ]);
    expect(manifest.source.installType).toBe('package');
    expect(manifest.files.installPaths).toEqual(['config', 'themes/mytheme', 'apps-external']);
    expect(manifest.files.appDirs).toEqual([
      {
        path: join(instance.installDir, 'apps'),
        listed: true,
        writable: false,
        copied: 'none',
        shipped: ['files'],
        reason: 'server code (install-type: package)',
      },
      {
        path: join(instance.installDir, 'apps-external'),
        listed: true,
        writable: true,
        copied: 'whole',
        reason: 'not shipped with the server code',
      },
    ]);
    // Nothing owns the code and there is no shipped.json: said, not silently assumed.
    expect(run.stderr).toContain(
      `No package manager owns the server code and there is no core/shipped.json: the apps in ${join(instance.installDir, 'apps')} cannot be told from the shipped ones`,
    );
    instance.remove();
  });

  it('an apps_paths entry outside the installation is in the archive under extra/', async () => {
    const instance = await sample();
    const outside = join(instance.root, 'more apps');
    mkdirSync(join(outside, 'otherapp', 'appinfo'), { recursive: true });
    writeFileSync(
      join(outside, 'otherapp', 'appinfo', 'info.xml'),
      '<info><id>otherapp</id></info>\n',
    );
    execFileSync('chown', ['-R', `${instance.owner.uid}:${instance.owner.gid}`, outside]);
    const config = instance.readConfig();
    const appsPaths = [
      ...(config.apps_paths as unknown[]),
      { path: outside, url: '/more-apps', writable: true },
    ];
    writeFileSync(instance.configPath, renderConfigPhp({ ...config, apps_paths: appsPaths }));
    const { restored, manifest } = await backedUp(instance, ['--install-type', 'package']);
    expect(existsSync(join(restored, 'extra', outside))).toBe(true);
    expect(
      diffTrees(await snapshotTree(outside), await snapshotTree(join(restored, 'extra', outside))),
    ).toEqual([]);
    expect(manifest.files.absolutePaths).toEqual([outside]);
    expect(manifest.files.appDirs.map((d) => [d.path, d.copied])).toEqual([
      [join(instance.installDir, 'apps'), 'none'],
      [join(instance.installDir, 'apps-external'), 'whole'],
      [outside, 'whole'],
    ]);
    instance.remove();
  });

  it('Nextcloud, package install: app-store apps in apps/ are kept, the apps core/shipped.json lists are not, and the summary says why', async () => {
    const instance = await sample({
      flavour: 'nextcloud',
      appStoreApps: ['storeapp'],
      shippedJson: true,
    });
    const { run, restored, manifest } = await backedUp(instance, ['--install-type', 'package']);
    expect(readdirSync(join(restored, 'owncloud', 'apps'))).toEqual(['storeapp']);
    expect(
      diffTrees(
        await snapshotTree(join(instance.installDir, 'apps', 'storeapp')),
        await snapshotTree(join(restored, 'owncloud', 'apps', 'storeapp')),
      ),
    ).toEqual([]);
    expect(manifest.files.appDirs[0]).toMatchObject({
      path: join(instance.installDir, 'apps'),
      copied: 'apps',
      apps: ['storeapp'],
      shipped: ['files'],
    });
    expect(manifest.files.serverCode).toEqual({
      what: `everything else in ${instance.installDir}`,
      why: 'server code: package install, reinstall the same version (Nextcloud 28.0.4.1)',
    });
    expect(run.stdout).toContain(
      `  left out: everything else in ${instance.installDir} (server code: package install, reinstall the same version (Nextcloud 28.0.4.1))\n`,
    );
    expect(run.stdout).toContain(
      `  left out: the apps in ${join(instance.installDir, 'apps')} that ship with the release (files) (they come back with the reinstall)\n`,
    );
    instance.remove();
  });
});

describe('install-type auto', () => {
  it('takes an installation no package owns for a tarball install: the whole installation is in the archive', async () => {
    const instance = await sample({ appStoreApps: ['storeapp'] });
    const { run, restored, manifest } = await backedUp(instance);
    expect(manifest.source.installType).toBe('tarball');
    expect(manifest.source.installTypeReason).toBe(
      `detected: no package owns ${instance.installDir}/version.php or occ (asked dpkg)`,
    );
    expect(manifest.files.installPaths).toEqual(['.']);
    expect(manifest.files.serverCode).toBeUndefined();
    expect(
      diffTrees(
        withoutMtime(
          await snapshotTree(instance.installDir, { exclude: (p) => p === 'data' }),
          'config/config.php',
        ),
        withoutMtime(await snapshotTree(join(restored, 'owncloud')), 'config/config.php'),
      ),
    ).toEqual([]);
    expect(run.stdout).toContain(
      `tarball install (detected: no package owns ${instance.installDir}/version.php or occ (asked dpkg))`,
    );
    instance.remove();
  });

  describe('with the server code owned by a real .deb package', () => {
    const packageName = `ocb-test-server-${process.pid}-${randomBytes(4).toString('hex')}`;
    let attempted = false;

    // Removed whatever happened, once an install was tried (even a half-done one).
    afterAll(() => {
      if (!attempted) return;
      try {
        dpkg(['-r', packageName]);
      } finally {
        const left = spawnSync('dpkg-query', ['--show', '--showformat=${Status}', packageName], {
          encoding: 'utf8',
        });
        expect(
          left.status !== 0 ||
            !/ (installed|unpacked|half-installed|half-configured|triggers-\w+)$/.test(left.stdout),
          left.stdout,
        ).toBe(true);
      }
    });

    /** dpkg, waiting out another dpkg's lock rather than failing on it. */
    function dpkg(args: string[]): void {
      for (let attempt = 0; ; attempt++) {
        const result = spawnSync('dpkg', args, { encoding: 'utf8' });
        if (result.status === 0) return;
        if (!/lock/i.test(result.stderr) || attempt >= 60)
          throw new Error(`dpkg ${args.join(' ')} failed: ${result.stderr}`);
        execFileSync('sleep', ['1']);
      }
    }

    /** Builds and installs a package owning the instance's version.php, occ and apps/files. */
    function installServerPackage(instance: SampleInstance): void {
      const tree = join(instance.root, 'deb tree');
      for (const path of ['version.php', 'occ', 'apps/files']) {
        mkdirSync(dirname(join(tree, instance.installDir, path)), { recursive: true });
        cpSync(join(instance.installDir, path), join(tree, instance.installDir, path), {
          recursive: true,
        });
      }
      mkdirSync(join(tree, 'DEBIAN'));
      writeFileSync(
        join(tree, 'DEBIAN', 'control'),
        [
          `Package: ${packageName}`,
          'Version: 10.15.0.2',
          'Architecture: all',
          'Maintainer: owncloud-backup tests <tests@example.com>',
          'Description: ownCloud server code, as a distribution package ships it (test)',
          '',
        ].join('\n'),
      );
      const deb = join(instance.root, `${packageName}.deb`);
      execFileSync('dpkg-deb', ['--root-owner-group', '--build', tree, deb], { stdio: 'pipe' });
      attempted = true;
      dpkg(['-i', deb]);
    }

    it('is a package install: app-store apps in apps/ are kept, the apps the package ships are not', async () => {
      const instance = await sample({ appStoreApps: ['storeapp'] });
      installServerPackage(instance);
      expect(
        execFileSync('dpkg-query', ['--search', join(instance.installDir, 'version.php')], {
          encoding: 'utf8',
        }),
      ).toBe(`${packageName}: ${join(instance.installDir, 'version.php')}\n`);
      const { run, restored, manifest } = await backedUp(instance);
      expect(manifest.source.installType).toBe('package');
      expect(manifest.source.installTypeReason).toBe(
        `detected: ${instance.installDir}/version.php belongs to package ${packageName} (dpkg)`,
      );
      expect(readdirSync(join(restored, 'owncloud')).sort()).toEqual([
        'apps',
        'apps-external',
        'config',
        'themes',
      ]);
      expect(readdirSync(join(restored, 'owncloud', 'apps'))).toEqual(['storeapp']);
      expect(
        diffTrees(
          await snapshotTree(join(instance.installDir, 'apps', 'storeapp')),
          await snapshotTree(join(restored, 'owncloud', 'apps', 'storeapp')),
        ),
      ).toEqual([]);
      expect(manifest.files.appDirs[0]).toMatchObject({
        path: join(instance.installDir, 'apps'),
        copied: 'apps',
        apps: ['storeapp'],
        shipped: ['files'],
      });
      expect(manifest.files.serverCode?.why).toBe(
        `server code: package install, reinstall the same version (ownCloud 10.15.0.2, package ${packageName})`,
      );
      expect(run.stdout).toContain(
        `  left out: everything else in ${instance.installDir} (server code: package install, reinstall the same version (ownCloud 10.15.0.2, package ${packageName}))\n`,
      );
      instance.remove();
    });
  });
});

describe('a backup-dir inside what the backup copies', () => {
  it.each(['given', 'through a symlink'] as const)(
    'under the data directory (%s) is refused with exit 2, naming both paths, before anything is created',
    async (spelling) => {
      const instance = await sample();
      let backupDir = join(instance.dataDir, 'backups', 'nightly');
      if (spelling === 'through a symlink') {
        symlinkSync(instance.dataDir, join(instance.root, 'shortcut'));
        backupDir = join(instance.root, 'shortcut', 'backups', 'nightly');
      }
      const run = await runBackupCli(
        ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir],
        { secrets: [] },
      );
      expect(run.exitCode, explain(run)).toBe(2);
      const really = join(instance.dataDir, 'backups', 'nightly');
      expect(errorLine(run)).toBe(
        `owncloud-backup: error: backup-dir '${backupDir}'${spelling === 'given' ? '' : ` (really ${really})`} lies inside the data directory '${instance.dataDir}', which the backup copies: each backup would hold the ones before it. Choose a backup-dir outside the instance's files.`,
      );
      expect(existsSync(join(instance.dataDir, 'backups'))).toBe(false);
      expect(instance.occCalls()).toEqual([]);
      instance.remove();
    },
  );

  it('inside the installation of a tarball install is refused too', async () => {
    const instance = await sample({ dataDirOutside: true });
    const backupDir = join(instance.installDir, 'backups');
    const run = await runBackupCli(
      ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir],
      { secrets: [] },
    );
    expect(run.exitCode, explain(run)).toBe(2);
    expect(errorLine(run)).toContain(
      `backup-dir '${backupDir}' lies inside the installation '${instance.installDir}', which the backup copies`,
    );
    expect(existsSync(backupDir)).toBe(false);
    instance.remove();
  });
});
