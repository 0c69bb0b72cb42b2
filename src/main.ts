// Entry of the GitHub Action's main step.
import { runMain } from './action/main.ts';

await runMain();
