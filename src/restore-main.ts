// Entry of the restore action's main step.
import { runRestoreMain } from './action/restore-main.ts';

await runRestoreMain();
