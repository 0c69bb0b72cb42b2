import { execFileSync } from 'node:child_process';

/** uid and gid of a system account (os.userInfo only knows the current user). */
export function systemUser(name: string): { uid: number; gid: number } {
  const entry = execFileSync('getent', ['passwd', name], { encoding: 'utf8' }).trim();
  const [, , uid, gid] = entry.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}
