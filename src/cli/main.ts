export async function runCli(args: string[]): Promise<number> {
  console.log(`owncloud-backup: ${args.join(' ')}`);
  return 0;
}
