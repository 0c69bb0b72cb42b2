// Entry of the restore action's post step (runs always, after success, failure or cancellation).
import { runRestorePost } from './action/restore-post.ts';

await runRestorePost();
