/**
 * A mistake in what the user asked for (an input, an option, a path that is not an
 * ownCloud instance). Reported as one clear message, never with a stack trace.
 */
export class InputError extends Error {
  override name = 'InputError';
}

/**
 * A backup that could not be completed for a reason outside the user's input: a tool
 * failed, the database refused, the link died. The message names the cause.
 */
export class BackupError extends Error {
  override name = 'BackupError';
}

/** The link to the host failed (the command may or may not have run there). */
export class LinkError extends BackupError {
  override name = 'LinkError';
}

/**
 * Maintenance mode could not be switched back off: the one failure an administrator must
 * act on at once, so it is never hidden behind another.
 */
export class MaintenanceNotRestoredError extends BackupError {
  override name = 'MaintenanceNotRestoredError';
}

/**
 * A restore that failed after it had started changing the target: the message says what
 * failed and in what state the instance is now (the previous state put back, or not).
 */
export class RestoreError extends BackupError {
  override name = 'RestoreError';
}

/** The run was interrupted (SIGINT/SIGTERM, or the workflow was cancelled). */
export class InterruptedError extends Error {
  override name = 'InterruptedError';
  constructor(message = 'The backup was interrupted.') {
    super(message);
  }
}

/** The message to show for any error: ours are written for people; others get their class. */
export function describeError(error: unknown): string {
  if (
    error instanceof InputError ||
    error instanceof BackupError ||
    error instanceof InterruptedError
  )
    return error.message;
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
