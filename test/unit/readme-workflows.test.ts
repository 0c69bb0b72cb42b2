// The workflow examples in the README are safe to copy: no expression pasted into a shell
// script (GitHub's script-injection pattern), every workflow in one concurrency group per
// instance, and every manual input described.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const README = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
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
    ]);
  });

  it('never put a ${{ }} expression into a run: script (inputs go through env:)', () => {
    const scripts = documents.flatMap(runScripts);
    expect(scripts.length).toBeGreaterThan(0);
    expect(scripts.filter((s) => s.includes('${{'))).toEqual([]);
  });

  it('share one concurrency group, so no two backups of the instance overlap', () => {
    const groups = workflows.map((w) => w.concurrency?.group);
    expect(
      groups.every((g) => typeof g === 'string' && g.length > 0),
      String(groups),
    ).toBe(true);
    expect(new Set(groups).size).toBe(1);
    // A running backup is never cancelled by the next one: it would leave a partial run.
    expect(workflows.map((w) => w.concurrency?.['cancel-in-progress'])).toEqual(
      workflows.map(() => false),
    );
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
