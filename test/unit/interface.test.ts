// The action's public interface is written down three times (action.yml, the code, the
// README); these must agree, or users get an input that does nothing or a missing doc.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ACTION_INPUTS, actionSettings } from '../../src/action/inputs.ts';
import { CLI_ONLY, INPUTS, RESTORE_ONLY, planBackup } from '../../src/settings.ts';

const root = join(import.meta.dirname, '..', '..');
const actionYml = readFileSync(join(root, 'action.yml'), 'utf8');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const mainSource = readFileSync(join(root, 'src', 'action', 'main.ts'), 'utf8');

/** The keys directly under a top-level section of action.yml. */
function section(name: string): string[] {
  const body = actionYml.split(new RegExp(`^${name}:\\n`, 'm'))[1]!.split(/^\S/m)[0]!;
  return [...body.matchAll(/^ {2}([a-z-]+):$/gm)].map((m) => m[1]!);
}

describe('the action interface', () => {
  const inputs = section('inputs');
  const outputs = section('outputs');

  it('declares exactly the inputs the code reads', () => {
    expect([...inputs].sort()).toEqual(
      [
        ...Object.values(INPUTS).filter(
          (name) => !RESTORE_ONLY.includes(name) && !CLI_ONLY.includes(name),
        ),
        ...Object.values(ACTION_INPUTS),
      ].sort(),
    );
  });

  it('gives every input a default, so no boolean or number is ever read empty', () => {
    for (const input of inputs)
      expect(actionYml, input).toMatch(
        new RegExp(`^ {2}${input}:\\n(?: {4}.*\\n)*? {4}default: `, 'm'),
      );
  });

  it('declares exactly the outputs the main step sets', () => {
    const set = [...mainSource.matchAll(/core\.setOutput\('([a-z-]+)'/g)].map((m) => m[1]!);
    expect([...outputs].sort()).toEqual([...new Set(set)].sort());
  });

  /** action.yml's default of an input ('' when it has none). */
  function declaredDefault(input: string): string {
    const match = new RegExp(`^ {2}${input}:\\n(?: {4}.*\\n)*? {4}default: (.*)$`, 'm').exec(
      actionYml,
    );
    return (match?.[1] ?? '').replace(/^'(.*)'$/, '$1');
  }

  it("shows action.yml's default in the README's inputs table", () => {
    for (const input of inputs) {
      const declared = declaredDefault(input);
      if (declared === '') continue;
      const row = new RegExp(`^\\| \`${input}\` +\\| ([^|]*?) +\\|`, 'm').exec(readme);
      expect(row?.[1], input).toBe(`\`${declared}\``);
    }
  });

  it('gives the code the defaults action.yml declares', () => {
    const plan = planBackup({}, { backupDir: '/b' });
    expect({
      [INPUTS.installType]: plan.installType,
      [INPUTS.compression]: plan.compression,
      [INPUTS.owncloudDir]: plan.owncloudDir,
      [INPUTS.maintenanceMode]: String(plan.maintenanceMode),
      [INPUTS.dumpTimeout]: String(plan.dumpTimeoutSeconds),
    }).toEqual({
      [INPUTS.installType]: declaredDefault(INPUTS.installType),
      [INPUTS.compression]: declaredDefault(INPUTS.compression),
      [INPUTS.owncloudDir]: declaredDefault(INPUTS.owncloudDir),
      [INPUTS.maintenanceMode]: declaredDefault(INPUTS.maintenanceMode),
      [INPUTS.dumpTimeout]: declaredDefault(INPUTS.dumpTimeout),
    });
  });

  it('runs the restore test by default in the action, as action.yml says, and not on the command line', () => {
    const settings = actionSettings({}, {}, '/tmp/runner', new Date(0));
    expect(String(settings.plan.restoreTest)).toBe(declaredDefault(INPUTS.restoreTest));
    expect(declaredDefault(INPUTS.restoreTest)).toBe('true');
    expect(planBackup({}, { backupDir: '/b' }).restoreTest).toBe(false);
    expect(
      planBackup({ [INPUTS.restoreTest]: 'false' }, { backupDir: '/b', restoreTest: true })
        .restoreTest,
    ).toBe(false);
  });

  it('documents every input and output in the README', () => {
    for (const name of [...inputs, ...outputs]) expect(readme, name).toContain(`| \`${name}\``);
  });

  it('runs on Node 24 with a post step that always runs', () => {
    expect(actionYml).toMatch(/^ {2}using: node24$/m);
    expect(actionYml).toMatch(/^ {2}main: dist\/main\/index\.js$/m);
    expect(actionYml).toMatch(/^ {2}post: dist\/post\/index\.js$/m);
    expect(actionYml).toMatch(/^ {2}post-if: always\(\)$/m);
  });
});
