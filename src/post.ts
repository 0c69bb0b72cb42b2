// Entry of the GitHub Action's post step (runs always, after success, failure or cancellation).
import { runPost } from './action/post.ts';

await runPost();
