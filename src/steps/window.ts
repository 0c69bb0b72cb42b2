// Steps that run side by side inside the maintenance window.

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
