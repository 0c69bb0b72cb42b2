import * as core from '@actions/core';

export async function runMain(): Promise<void> {
  core.setFailed('The backup step is not implemented yet.');
}
