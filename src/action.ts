// Entry of every step of both actions (the backup's and the restore's main and post): one
// bundle, dist/action/index.js. Each step's file that action.yml names (dist/main/index.js,
// dist/post/index.js, dist/restore-main/index.js, dist/restore-post/index.js) is a one-line
// shim that loads it; the shim's directory names the step.
import { basename, dirname } from 'node:path';
import * as core from '@actions/core';
import { runMain } from './action/main.ts';
import { runPost } from './action/post.ts';
import { runRestoreMain } from './action/restore-main.ts';
import { runRestorePost } from './action/restore-post.ts';

const STEPS: Record<string, () => Promise<void>> = {
  main: runMain,
  post: runPost,
  'restore-main': runRestoreMain,
  'restore-post': runRestorePost,
};

const step = basename(dirname(process.argv[1] ?? ''));
const run = STEPS[step];
if (run) await run();
else core.setFailed(`This bundle runs through dist/<step>/index.js; '${step}' is not a step.`);
