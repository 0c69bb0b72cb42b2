import * as core from '@actions/core';
import { formatSeconds, type Reporter } from '../report.ts';

/** Progress in the GitHub log: each step a collapsible group, with its duration. */
export function actionReporter(redact: (text: string) => string): Reporter {
  return {
    info: (message) => core.info(redact(message)),
    warning: (message) => core.warning(redact(message)),
    async group(title, work) {
      core.startGroup(title);
      const started = performance.now();
      try {
        const result = await work();
        core.info(`${title}: done in ${formatSeconds((performance.now() - started) / 1000)}`);
        return result;
      } finally {
        core.endGroup();
      }
    },
  };
}
