// A deterministic moment inside a tool's work (tar extracting, a client loading a dump):
// a directory of wrappers, put first on the PATH of the command under test, that run the
// REAL tool, but with its stdin passed through a gate. For the call that matches, the gate
// lets the first `bytes` through, writes the real tool's pid to `held`, and waits until the
// test releases it; every other call execs the real tool untouched (the gate uses fd 9
// only: the tools get fd 3 and the rest as given). The tool is never
// replaced: it is the same process (the wrapper execs it), only its input waits.
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireTool } from '../harness/tools.ts';

export interface ToolGate {
  /** Prepend to the PATH of the command under test. */
  readonly dir: string;
  /** PATH for the command under test: the gate first, then this process's PATH. */
  readonly path: string;
  /** Resolves with the real tool's pid once it has had its first bytes and waits. */
  reached(isDone?: () => boolean): Promise<number>;
  /** Lets the rest of the input through (no-op when released already). */
  release(): void;
}

/**
 * Gates `program` when its argv contains every one of `argvHas`: it gets `bytes` bytes of
 * its stdin, then waits for release.
 */
export function gateTool(
  parent: string,
  program: string,
  argvHas: string[],
  bytes: number,
): ToolGate {
  const dir = join(parent, `gate-${program}-${process.pid}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(dir, { recursive: true });
  // The tool may run as the web server's user (sqlite3 does): it writes the fifo and pid here.
  chmodSync(dir, 0o1777);
  const real = requireTool(program);
  const hold = join(dir, 'hold');
  const held = join(dir, 'held');
  const claimed = join(dir, 'claimed');
  writeFileSync(hold, '');
  const checks = argvHas
    .map((a) => `case " $* " in *${shellWord(` ${a} `)}*) ;; *) match=no ;; esac`)
    .join('\n');
  writeFileSync(
    join(dir, program),
    `#!/bin/sh
match=yes
${checks}
if [ "$match" = yes ] && [ -e ${shellWord(hold)} ]; then
  fifo=${shellWord(dir)}/fifo.$$
  mkfifo "$fifo"
  exec 9<&0
  (
    # Only the first call whose input is longer than the gate's bytes waits (not a short
    # script run with the same argv before it).
    head=${shellWord(dir)}/head.$$
    dd bs=${bytes} count=1 iflag=fullblock of="$head" 2>/dev/null
    size=$(stat -c %s -- "$head")
    cat -- "$head"
    rm -f -- "$head"
    if [ "$size" -ge ${bytes} ] && mkdir ${shellWord(claimed)} 2>/dev/null; then
      echo $$ > ${shellWord(held)}
      while [ -e ${shellWord(hold)} ]; do sleep 0.01; done
    fi
    exec cat
  ) <&9 > "$fifo" &
  exec 9<&-
  exec ${shellWord(real)} "$@" < "$fifo"
fi
exec ${shellWord(real)} "$@"
`,
  );
  chmodSync(join(dir, program), 0o755);
  let released = false;
  return {
    dir,
    path: `${dir}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    async reached(isDone) {
      while (!released) {
        const pid = existsSync(held) ? readFileSync(held, 'utf8').trim() : '';
        if (pid) return Number(pid);
        if (isDone?.()) throw new Error(`${program} was never held: the run ended first`);
        await new Promise((r) => setTimeout(r, 10));
      }
      return -1;
    },
    release() {
      released = true;
      rmSync(hold, { force: true });
    },
  };
}

function shellWord(text: string): string {
  return `'${text.replaceAll("'", "'\\''")}'`;
}
