// The restore action's pure parts: its inputs (the confirm guard first, then which artifact),
// the choice among a run's artifacts, and the restore/action.yml it ships.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { RESTORE_ACTION_INPUTS, restoreActionSettings } from '../../src/action/restore-inputs.ts';
import { chooseArtifact } from '../../src/destination/artifact.ts';
import { InputError } from '../../src/errors.ts';
import { INPUTS, type RawInputs } from '../../src/settings.ts';

const KEY = [
  '-----BEGIN OPENSSH PRIVATE KEY-----',
  'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW',
  '-----END OPENSSH PRIVATE KEY-----',
].join('\n');
const KNOWN_HOSTS =
  'cloud.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC3MRaHtm0x1cjBEbSH4NRj2lV8mFhcRCfK7lxC7e3sE';
const remote: RawInputs = {
  host: 'cloud.example.com',
  'ssh-key': KEY,
  'known-hosts': KNOWN_HOSTS,
};
const env = { GITHUB_REPOSITORY: 'example/owncloud-backup' };

function settingsError(raw: RawInputs, action: Record<string, string>): string {
  try {
    restoreActionSettings(raw, action, env);
  } catch (error) {
    expect(error).toBeInstanceOf(InputError);
    return (error as Error).message;
  }
  throw new Error('no error');
}

describe('the confirm guard', () => {
  it('takes the host input exactly, or local without one', () => {
    expect(restoreActionSettings(remote, { confirm: 'cloud.example.com' }, env)).toMatchObject({
      confirmed: 'cloud.example.com',
      plan: { kind: 'instance', restore: { target: { kind: 'ssh', host: 'cloud.example.com' } } },
      source: {},
    });
    expect(restoreActionSettings({}, { confirm: 'local' }, env)).toMatchObject({
      confirmed: 'local',
      plan: { kind: 'instance', restore: { target: { kind: 'local' } } },
    });
  });

  it.each([
    [
      'empty, remote',
      remote,
      '',
      "Invalid input 'confirm': it is empty, and must be the target 'cloud.example.com' (the host input) to confirm that the instance there is overwritten.",
    ],
    [
      'empty, local',
      {},
      '',
      "Invalid input 'confirm': it is empty, and must be the target 'local' (the host input is empty: this runner) to confirm that the instance there is overwritten.",
    ],
    [
      'another host',
      remote,
      'staging.example.com',
      "Invalid input 'confirm': 'staging.example.com' is not the target 'cloud.example.com' (the host input). Nothing was downloaded or changed; set confirm to exactly the host this restore overwrites.",
    ],
    [
      'another case',
      remote,
      'Cloud.example.com',
      "Invalid input 'confirm': 'Cloud.example.com' is not the target 'cloud.example.com' (the host input). Nothing was downloaded or changed; set confirm to exactly the host this restore overwrites.",
    ],
    [
      'local for a remote host',
      remote,
      'local',
      "Invalid input 'confirm': 'local' is not the target 'cloud.example.com' (the host input). Nothing was downloaded or changed; set confirm to exactly the host this restore overwrites.",
    ],
    [
      'a host for the local target',
      {},
      'cloud.example.com',
      "Invalid input 'confirm': 'cloud.example.com' is not the target 'local' (the host input is empty: this runner). Nothing was downloaded or changed; set confirm to exactly the host this restore overwrites.",
    ],
  ])('%s: refused, naming both values', (_name, raw, confirm, message) => {
    expect(settingsError(raw, { confirm })).toBe(message);
  });

  it('comes before every other check: a wrong target is the first thing said', () => {
    expect(
      settingsError({ ...remote, 'db-type': 'mssql' }, { confirm: 'x', 'run-id': 'abc' }),
    ).toBe(
      "Invalid input 'confirm': 'x' is not the target 'cloud.example.com' (the host input). Nothing was downloaded or changed; set confirm to exactly the host this restore overwrites.",
    );
  });
});

describe('restoreActionSettings', () => {
  const ok = { confirm: 'local' };

  it('validates the instance and restore inputs through planRestore', () => {
    expect(settingsError({ 'db-type': 'mssql' }, ok)).toBe(
      "Invalid input 'db-type': 'mssql' is not supported. Expected one of: auto, mysql, pgsql, sqlite.",
    );
    expect(settingsError({ 'safety-copy': 'false', 'discard-previous': 'true' }, ok)).toBe(
      "Invalid input 'discard-previous': it only applies with a safety copy (input 'safety-copy' is false: there is nothing to discard).",
    );
    expect(settingsError({ 'db-admin-password': 'pw' }, ok)).toBe(
      "Invalid input 'db-admin-password': it only applies with input 'db-admin-user' (the account that may drop and create databases).",
    );
    expect(
      restoreActionSettings(
        { 'db-admin-user': 'root', 'db-admin-password': ' pw ', 'allow-version-mismatch': 'true' },
        ok,
        env,
      ).plan.restore,
    ).toMatchObject({
      dbAdmin: { user: 'root', password: ' pw ' },
      allowVersionMismatch: true,
      safetyCopy: true,
      discardPrevious: false,
    });
  });

  it('restores single paths with the path input, the action defaults of the other inputs aside', () => {
    const defaults = {
      'safety-copy': 'true',
      'discard-previous': 'false',
      'allow-version-mismatch': 'false',
    };
    const settings = restoreActionSettings(
      {
        ...defaults,
        path: 'alice/files/Documents\nbob/files/a.txt',
        'as-copy': 'true',
        overwrite: 'false',
      },
      ok,
      env,
    );
    expect(settings.plan).toMatchObject({
      kind: 'paths',
      restore: {
        conflicts: 'as-copy',
        paths: [
          { user: 'alice', path: 'files/Documents' },
          { user: 'bob', path: 'files/a.txt' },
        ],
      },
    });
    expect(settingsError({ ...defaults, path: 'alice/files/A', 'db-admin-user': 'root' }, ok)).toBe(
      "Invalid input 'db-admin-user': it applies to a restore of the whole instance, not of single paths (input 'path'): the database stays as it is.",
    );
    expect(settingsError({ overwrite: 'true' }, ok)).toBe(
      "Invalid input 'overwrite': it applies with input 'path' only (a restore of single paths).",
    );
  });

  it('takes a named artifact of this run', () => {
    expect(
      restoreActionSettings({}, { ...ok, 'artifact-name': 'nightly ünï' }, env).source,
    ).toEqual({ name: 'nightly ünï' });
  });

  it("takes another run's artifact with run-id and github-token; repository defaults to this one", () => {
    expect(
      restoreActionSettings({}, { ...ok, 'run-id': '123456789', 'github-token': 'ghs_x' }, env)
        .source,
    ).toEqual({
      findBy: {
        workflowRunId: 123456789,
        repositoryOwner: 'example',
        repositoryName: 'owncloud-backup',
        token: 'ghs_x',
      },
    });
    expect(
      restoreActionSettings(
        {},
        { ...ok, 'run-id': '7', repository: 'other/repo.name', 'github-token': 't' },
        env,
      ).source.findBy,
    ).toMatchObject({ workflowRunId: 7, repositoryOwner: 'other', repositoryName: 'repo.name' });
  });

  it.each([
    [
      { 'artifact-name': 'a:b' },
      `Invalid input 'artifact-name': 'a:b' contains a character artifacts cannot have. Not allowed: " : < > | * ? \\ / and line breaks.`,
    ],
    [
      { 'run-id': 'abc', 'github-token': 't' },
      "Invalid input 'run-id': 'abc' is not a workflow run id. Expected the number in the run's URL (…/actions/runs/<id>).",
    ],
    [
      { 'run-id': '0', 'github-token': 't' },
      "Invalid input 'run-id': '0' is not a workflow run id. Expected the number in the run's URL (…/actions/runs/<id>).",
    ],
    [
      { 'run-id': '99999999999999999999', 'github-token': 't' },
      "Invalid input 'run-id': '99999999999999999999' is not a workflow run id. Expected the number in the run's URL (…/actions/runs/<id>).",
    ],
    [
      { 'run-id': '12' },
      "Invalid input 'github-token': a token that may read the run's artifacts (actions: read) is required with input 'run-id', e.g. ${{ github.token }}.",
    ],
    [
      { 'run-id': '12', repository: 'no-slash', 'github-token': 't' },
      "Invalid input 'repository': 'no-slash' is not a repository. Expected owner/name.",
    ],
    [
      { repository: 'a/b' },
      "Invalid input 'repository': it only applies with input 'run-id' (the workflow run whose artifact to restore).",
    ],
    [
      { 'github-token': 't' },
      "Invalid input 'github-token': it only applies with input 'run-id' (this run's own artifacts need no token).",
    ],
  ])('%o: one error naming the input', (action, message) => {
    expect(settingsError({}, { ...ok, ...action })).toBe(message);
  });

  it('without GITHUB_REPOSITORY, run-id needs repository', () => {
    expect(() =>
      restoreActionSettings({}, { ...ok, 'run-id': '12', 'github-token': 't' }, {}),
    ).toThrow(
      "Invalid input 'repository': not given, and GITHUB_REPOSITORY is not set. Expected owner/name.",
    );
  });
});

describe('chooseArtifact', () => {
  const at = (minute: number) => new Date(Date.UTC(2026, 10, 26, 2, minute));
  const artifacts = [
    { id: 1, name: 'owncloud-backup-20261124-021700', size: 1, createdAt: at(1) },
    { id: 7, name: 'owncloud-backup-20261126-021700', size: 1, createdAt: at(3) },
    { id: 5, name: 'owncloud-backup-20261125-021700', size: 1, createdAt: at(2) },
    { id: 9, name: 'coverage-report', size: 1, createdAt: at(4) },
    { id: 8, name: 'owncloud-backup-old-format', size: 1, createdAt: at(5) },
  ];

  it('takes the newest artifact named as backups are, by default', () => {
    expect(chooseArtifact(artifacts, {}).id).toBe(7);
  });

  it('takes a named artifact, backup-named or not', () => {
    expect(chooseArtifact(artifacts, { name: 'owncloud-backup-old-format' }).id).toBe(8);
    expect(chooseArtifact(artifacts, { name: 'owncloud-backup-20261124-021700' }).id).toBe(1);
  });

  it('names what the run has when the name is not there', () => {
    expect(() => chooseArtifact(artifacts.slice(3), { name: 'nightly' })).toThrow(
      "No artifact named 'nightly' in this workflow run (input 'artifact-name'). It has: 'owncloud-backup-old-format', 'coverage-report'.",
    );
    expect(() => chooseArtifact([], { name: 'nightly' })).toThrow(
      "No artifact named 'nightly' in this workflow run (input 'artifact-name'). It has no artifacts.",
    );
  });

  it('says when the run has no backup artifact, and how to pick one', () => {
    expect(() =>
      chooseArtifact(artifacts.slice(3), {
        findBy: { workflowRunId: 42, repositoryOwner: 'o', repositoryName: 'r', token: 't' },
      }),
    ).toThrow(
      "No backup artifact in run 42 of o/r: none is named owncloud-backup-YYYYMMDD-HHMMSS (2 other artifacts). Set input 'artifact-name' to restore one named otherwise, or input 'run-id' to take one of another run.",
    );
  });
});

describe('restore/action.yml', () => {
  const root = join(import.meta.dirname, '..', '..');
  const metadata = parse(readFileSync(join(root, 'restore', 'action.yml'), 'utf8')) as {
    inputs: Record<string, { description: string; required?: boolean; default?: string }>;
    outputs: Record<string, { description: string }>;
    runs: Record<string, string>;
  };
  const backup = parse(readFileSync(join(root, 'action.yml'), 'utf8')) as {
    inputs: Record<string, { description: string; default?: string }>;
  };

  it('runs the restore bundles of the repository on node24, post always', () => {
    expect(metadata.runs).toEqual({
      using: 'node24',
      main: '../dist/restore-main/index.js',
      post: '../dist/restore-post/index.js',
      'post-if': 'always()',
    });
  });

  it('declares every input the code reads, and nothing else; confirm is required', () => {
    const read = [
      ...Object.values(RESTORE_ACTION_INPUTS),
      ...Object.values(INPUTS).filter((name) => name in metadata.inputs),
    ];
    expect(Object.keys(metadata.inputs).sort()).toEqual([...new Set(read)].sort());
    expect(metadata.inputs.confirm?.required).toBe(true);
    for (const name of [
      'host',
      'port',
      'user',
      'ssh-key',
      'known-hosts',
      'owncloud-dir',
      'data-dir',
      'db-type',
      'db-host',
      'db-port',
      'db-name',
      'db-user',
      'db-password',
      'occ-user',
      'db-admin-user',
      'db-admin-password',
      'safety-copy',
      'discard-previous',
      'owner',
      'allow-version-mismatch',
    ])
      expect(Object.keys(metadata.inputs), name).toContain(name);
    for (const [name, input] of Object.entries(metadata.inputs))
      expect(input.description?.trim(), name).toBeTruthy();
  });

  // Except the artifact (a backup names a new one) and the installation directory (a restore
  // defaults to where the backup recorded it).
  it('shares the backup action’s defaults for the inputs both have', () => {
    for (const [name, input] of Object.entries(metadata.inputs))
      if (name in backup.inputs && !['artifact-name', 'owncloud-dir'].includes(name))
        expect(input.default, name).toBe(backup.inputs[name]!.default);
  });

  it('has the outputs the main step sets', () => {
    expect(Object.keys(metadata.outputs).sort()).toEqual([
      'artifact-id',
      'artifact-name',
      'backup-name',
      'owncloud-version',
      'previous-state',
    ]);
  });
});
