// Progress reporting, one interface for the terminal and the GitHub log. Every line
// passes through the secret registry first.

export interface Reporter {
  info(message: string): void;
  warning(message: string): void;
  /** Runs a step under a title (a collapsible group in the GitHub log), reporting its duration. */
  group<T>(title: string, work: () => Promise<T>): Promise<T>;
}

/** Formats seconds as people read them: 0.4 s, 12.3 s, 4 min 05 s. */
export function formatSeconds(value: number): string {
  if (value < 60) return `${value.toFixed(1)} s`;
  const minutes = Math.floor(value / 60);
  return `${minutes} min ${String(Math.round(value % 60)).padStart(2, '0')} s`;
}

/** Reports to a stream (stderr for the command line), with times. */
export function streamReporter(
  write: (text: string) => void,
  redact: (text: string) => string,
): Reporter {
  const line = (prefix: string, message: string) => {
    const time = new Date().toISOString().slice(11, 19);
    write(`${time} ${prefix}${redact(message)}\n`);
  };
  return {
    info: (message) => line('', message),
    warning: (message) => line('warning: ', message),
    async group(title, work) {
      line('== ', title);
      const started = performance.now();
      const result = await work();
      line('   ', `${title}: done in ${formatSeconds((performance.now() - started) / 1000)}`);
      return result;
    },
  };
}
