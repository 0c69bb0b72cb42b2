// Entry of the `owncloud-backup` command.
import { runCli } from './cli/main.ts';

process.exitCode = await runCli(process.argv.slice(2));
