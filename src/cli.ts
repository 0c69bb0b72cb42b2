// Entry of the `owncloud-backup` command.
import { dropOutputToClosedPipes, runCli } from './cli/main.ts';

dropOutputToClosedPipes();
process.exitCode = await runCli(process.argv.slice(2));
