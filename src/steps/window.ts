// The maintenance window, and the steps that run side by side inside it.
import { describeError, MaintenanceNotRestoredError } from '../errors.ts';
import { formatSeconds, type Reporter } from '../report.ts';
import type { MaintenanceGuard } from './maintenance.ts';

/**
 * Switches maintenance mode on (unless there is no guard: maintenance-mode false), runs the
 * work, and restores the prior state whatever happened: when that fails too, both causes
 * are reported (why the work failed, and that the instance is still in maintenance mode).
 */
export async function inMaintenanceWindow<T>(
  maintenance: MaintenanceGuard | undefined,
  reporter: Reporter,
  work: () => Promise<T>,
): Promise<T> {
  let failure: { error: unknown } | undefined;
  let outcome: T | undefined;
  try {
    await maintenance?.enable();
    outcome = await work();
  } catch (error) {
    failure = { error };
  }
  if (maintenance) {
    try {
      await maintenance.restore();
    } catch (restoreError) {
      throw new MaintenanceNotRestoredError(
        failure
          ? `${describeError(failure.error)} ${describeError(restoreError)}`
          : describeError(restoreError),
      );
    }
    if (maintenance.window.switchedByUs)
      reporter.info(`Maintenance mode was on for ${formatSeconds(maintenance.seconds())}.`);
  }
  if (failure) throw failure.error;
  return outcome as T;
}

/**
 * Runs steps side by side; the first failure stops the others (through their signal) and,
 * once all have ended, is the one reported.
 */
export async function allOrNothing<T extends readonly Promise<unknown>[]>(
  signal: AbortSignal,
  start: (stepSignal: AbortSignal) => T,
): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const steps = new AbortController();
  const stop = () => steps.abort();
  signal.addEventListener('abort', stop, { once: true });
  let firstFailure: { error: unknown } | undefined;
  try {
    const running = start(steps.signal).map((step) =>
      step.catch((error: unknown) => {
        firstFailure ??= { error };
        steps.abort();
        throw error;
      }),
    );
    const settled = await Promise.allSettled(running);
    if (firstFailure) throw firstFailure.error;
    return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as {
      -readonly [K in keyof T]: Awaited<T[K]>;
    };
  } finally {
    signal.removeEventListener('abort', stop);
  }
}
