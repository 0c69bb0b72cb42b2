// The workflow examples in the README are safe to copy: no expression pasted into a shell
// script (GitHub's script-injection pattern), every workflow in one concurrency group per
// instance, every manual input described, and every input given to one of this repository's
// actions declared by its action.yml (the restore's confirm guard never defeated).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const ROOT = join(import.meta.dirname, '..', '..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const blocks = [...README.matchAll(/```yaml\n([\s\S]*?)```\n/g)].map((m) => m[1]!);

type Node = unknown;

/** Every value of a `run:` key, anywhere in the document. */
function runScripts(node: Node): string[] {
  if (Array.isArray(node)) return node.flatMap(runScripts);
  if (node === null || typeof node !== 'object') return [];
  return Object.entries(node).flatMap(([key, value]) =>
    key === 'run' ? [String(value)] : runScripts(value),
  );
}

interface Workflow {
  name: string;
  on: Record<string, { inputs?: Record<string, { description?: string }> } | null>;
  concurrency?: { group?: string; 'cancel-in-progress'?: boolean };
  jobs: Record<string, unknown>;
}

interface Step {
  uses?: string;
  with?: Record<string, string>;
}

const BACKUP = 'owncloud-backup/owncloud-backup@v1';
const RESTORE = 'owncloud-backup/owncloud-backup/restore@v1';
type Inputs = Record<string, { required?: boolean }>;
const inputsOf = (path: string) =>
  (parse(readFileSync(join(ROOT, path), 'utf8')) as { inputs: Inputs }).inputs;
const ACTIONS: Record<string, Inputs> = {
  [BACKUP]: inputsOf('action.yml'),
  [RESTORE]: inputsOf(join('restore', 'action.yml')),
};

/** Every step of every job of a workflow. */
function steps(workflow: Workflow): Step[] {
  return Object.values(workflow.jobs).flatMap((job) =>
    ((job as { steps?: Step[] }).steps ?? []).map((step) => ({
      ...step,
      ...(step.with
        ? { with: Object.fromEntries(Object.entries(step.with).map(([k, v]) => [k, String(v)])) }
        : {}),
    })),
  );
}

const documents = blocks.map((text) => parse(text) as Node);
const workflows = documents.filter(
  (d): d is Workflow => d !== null && typeof d === 'object' && 'jobs' in d && 'on' in d,
);

describe("the README's workflow examples", () => {
  it('are all valid YAML, and the workflows among them are found', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(4);
    expect(workflows.map((w) => w.name)).toEqual([
      'Nightly ownCloud backup',
      'Upgrade ownCloud',
      'ownCloud backup (manual)',
      'Restore ownCloud (manual)',
      'ownCloud restore drill',
    ]);
  });

  it('never put a ${{ }} expression into a run: script (inputs go through env:)', () => {
    const scripts = documents.flatMap(runScripts);
    expect(scripts.length).toBeGreaterThan(0);
    expect(scripts.filter((s) => s.includes('${{'))).toEqual([]);
  });

  it('keep one concurrency group per instance, so no two runs on one instance overlap', () => {
    const groups = workflows.map((w) => w.concurrency?.group ?? '');
    expect(
      groups.every((g) => g.startsWith('owncloud-backup-')),
      String(groups),
    ).toBe(true);
    // A running backup or restore is never cancelled by the next one: it would leave a partial run.
    expect(workflows.map((w) => w.concurrency?.['cancel-in-progress'])).toEqual(
      workflows.map(() => false),
    );
    // The backups of the production instance share one group ...
    const backups = workflows.filter((w) => steps(w).some((s) => s.uses === BACKUP));
    expect(backups.length).toBeGreaterThanOrEqual(3);
    const production = new Set(backups.map((w) => w.concurrency?.group));
    expect([...production]).toEqual(['owncloud-backup-cloud.example.com']);
    // ... and a restore is in the group of each host it names: production's too.
    for (const w of workflows.filter((w) => steps(w).some((s) => s.uses === RESTORE))) {
      const hosts = steps(w)
        .filter((s) => s.uses === RESTORE)
        .map((s) => s.with?.host ?? '')
        .filter((h) => !h.includes('${{'));
      for (const host of hosts) expect(w.concurrency?.group, w.name).toContain(host);
      if (hosts.length === 0) expect(w.concurrency?.group, w.name).toContain("'cloud.example.com'");
    }
  });

  it("give this repository's actions only the inputs their action.yml declares, and the required ones", () => {
    const uses = workflows.flatMap(steps).filter((s) => s.uses === BACKUP || s.uses === RESTORE);
    expect(uses.filter((s) => s.uses === RESTORE).length).toBeGreaterThanOrEqual(2);
    for (const step of uses) {
      const declared = ACTIONS[step.uses!]!;
      const given = Object.keys(step.with ?? {});
      expect(
        given.filter((name) => !(name in declared)),
        step.uses,
      ).toEqual([]);
      const required = Object.entries(declared)
        .filter(([, input]) => input.required)
        .map(([name]) => name);
      expect(
        required.filter((name) => !given.includes(name)),
        step.uses,
      ).toEqual([]);
    }
  });

  it('never give confirm the same value as host: the guard would check nothing', () => {
    for (const step of workflows.flatMap(steps).filter((s) => s.uses === RESTORE)) {
      const { host = '', confirm = '' } = step.with ?? {};
      expect(confirm).not.toBe('');
      // A literal host may be confirmed literally; a host from a variable needs a person's input.
      if (host.includes('${{')) {
        expect(confirm).not.toBe(host);
        expect(confirm).toMatch(/^\$\{\{ inputs\./);
      } else expect(confirm).toBe(host || 'local');
    }
  });

  it('describe every workflow_dispatch input', () => {
    const inputs = workflows.flatMap((w) =>
      Object.entries(w.on.workflow_dispatch?.inputs ?? {}).map(([name, input]) => ({
        name: `${w.name}: ${name}`,
        description: input.description,
      })),
    );
    expect(inputs.length).toBeGreaterThanOrEqual(5);
    expect(inputs.filter((i) => !i.description?.trim()).map((i) => i.name)).toEqual([]);
  });
});
