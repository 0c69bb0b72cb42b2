// Progress of the long steps (the bulk copy, the archive): a line in the log at a steady
// pace, never a flood. Pure: the clock is injected, so the pacing is tested without waiting.
import { InputError } from './errors.ts';
import { formatSeconds } from './report.ts';
import { formatBytes } from './steps/preflight.ts';

/** Seconds between progress lines unless OWNCLOUD_BACKUP_PROGRESS_SECONDS says otherwise. */
export const DEFAULT_PROGRESS_SECONDS = 10;
export const PROGRESS_ENV = 'OWNCLOUD_BACKUP_PROGRESS_SECONDS';

/** The interval from the environment (the action's `env:` or the shell), validated. */
export function progressSecondsFrom(env: NodeJS.ProcessEnv): number {
  const value = env[PROGRESS_ENV]?.trim();
  if (value === undefined || value === '') return DEFAULT_PROGRESS_SECONDS;
  const seconds = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !Number.isFinite(seconds))
    throw new InputError(
      `${PROGRESS_ENV} must be a number of seconds between progress lines (e.g. 10), got '${value}'.`,
    );
  return seconds;
}

/** How far a step got: bytes (and files, where the tool says) done so far. */
export interface ProgressCount {
  bytes: number;
  files?: number;
}

/**
 * Says when a line is due: the first one `intervalSeconds` after the start, then one per
 * interval, however often the tool reports.
 */
export class ProgressThrottle {
  private next: number;
  private readonly intervalMs: number;
  private readonly now: () => number;

  constructor(intervalSeconds: number, now: () => number) {
    this.intervalMs = intervalSeconds * 1000;
    this.now = now;
    this.next = now() + this.intervalMs;
  }

  /** Whether a line is due now; if so, the next one is due an interval later. */
  due(): boolean {
    const now = this.now();
    if (now < this.next) return false;
    this.next = now + this.intervalMs;
    return true;
  }
}

/** One progress line: `Bulk copy: 1.2 GiB of about 3.0 GiB (40 %), 1,234 files, 85.0 MiB/s, about 25 s left`. */
export function formatProgress(
  label: string,
  count: ProgressCount,
  elapsedSeconds: number,
  expectedBytes?: number,
): string {
  const parts: string[] = [];
  const rate = elapsedSeconds > 0 ? count.bytes / elapsedSeconds : 0;
  if (expectedBytes && expectedBytes > 0) {
    const percent = Math.min(100, Math.floor((count.bytes / expectedBytes) * 100));
    parts.push(`${formatBytes(count.bytes)} of about ${formatBytes(expectedBytes)} (${percent} %)`);
  } else {
    parts.push(formatBytes(count.bytes));
  }
  if (count.files !== undefined)
    parts.push(`${count.files.toLocaleString('en-US')} file${count.files === 1 ? '' : 's'}`);
  parts.push(`${formatBytes(rate)}/s`);
  if (expectedBytes && rate > 0 && count.bytes < expectedBytes)
    parts.push(`about ${formatSeconds((expectedBytes - count.bytes) / rate)} left`);
  return `${label}: ${parts.join(', ')}`;
}

/**
 * The progress of one step made of several runs (one rsync per part of the instance): each
 * run counts from zero, the step's line adds them up. Lines go out through `emit` when the
 * throttle says so; once any went out, `finish` adds the final totals.
 */
export class StepProgress {
  private readonly started: number;
  private readonly throttle: ProgressThrottle;
  private done: Required<ProgressCount> = { bytes: 0, files: 0 };
  private current: ProgressCount = { bytes: 0 };
  private hasFiles = false;
  /** The counts the last line showed; undefined before the first line. */
  private shown: ProgressCount | undefined;

  private readonly label: string;
  private readonly options: {
    intervalSeconds: number;
    now: () => number;
    emit: (line: string) => void;
    expectedBytes?: number;
  };

  constructor(
    label: string,
    options: {
      intervalSeconds: number;
      now: () => number;
      emit: (line: string) => void;
      /** The preflight's estimate of the step's bytes, for the percentage and time left. */
      expectedBytes?: number;
    },
  ) {
    this.label = label;
    this.options = options;
    this.started = options.now();
    this.throttle = new ProgressThrottle(options.intervalSeconds, options.now);
  }

  /** The current run's counts so far (they never go down within a run). */
  update(count: ProgressCount): void {
    this.current = {
      bytes: Math.max(this.current.bytes, count.bytes),
      ...(count.files !== undefined
        ? { files: Math.max(this.current.files ?? 0, count.files) }
        : {}),
    };
    this.hasFiles ||= count.files !== undefined;
    if (this.throttle.due()) this.write();
  }

  /** The current run ended with these totals; the next run counts from zero again. */
  endRun(total?: ProgressCount): void {
    const last = total ?? this.current;
    this.done = {
      bytes: this.done.bytes + Math.max(last.bytes, this.current.bytes),
      files: this.done.files + Math.max(last.files ?? 0, this.current.files ?? 0),
    };
    this.hasFiles ||= last.files !== undefined;
    this.current = { bytes: 0 };
  }

  /** The step's counts so far, over every run. */
  total(): ProgressCount {
    const bytes = this.done.bytes + this.current.bytes;
    if (!this.hasFiles) return { bytes };
    return { bytes, files: this.done.files + (this.current.files ?? 0) };
  }

  /** Ends the step: a last line with the totals, if any line went out and did not show them. */
  finish(): void {
    if (this.current.bytes > 0 || this.current.files) this.endRun();
    const total = this.total();
    if (this.shown === undefined) return;
    if (this.shown.bytes === total.bytes && this.shown.files === total.files) return;
    this.write();
  }

  private write(): void {
    const total = this.total();
    this.shown = total;
    this.options.emit(
      formatProgress(
        this.label,
        total,
        (this.options.now() - this.started) / 1000,
        this.options.expectedBytes,
      ),
    );
  }
}
