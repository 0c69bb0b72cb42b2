// Single restored paths into a live instance: the backup's items, extracted into a private
// staging directory inside the data directory, are renamed into place one by one (same file
// system: instant, owners, modes, ACLs and xattrs as archived), by the conflict rule. What an
// item replaces moves into the restore's root-only container (nothing is lost), and with
// server-side encryption each placed file's keys come along. A failure undoes every rename
// this run made. PHP does it: every ownCloud host has it, and it handles any byte in a name.
import { BackupError } from '../errors.ts';
import { reached, type Host } from '../host/host.ts';
import { stderrTail } from '../host/process.ts';
import type { ConflictRule, UserPath } from '../settings.ts';

export interface PlacementRequest {
  /** Holds `USER/...` as the archive's data directory held it. */
  staging: string;
  dataDir: string;
  /** Where replaced items go (created when needed, mode 0700). */
  container: string;
  rule: ConflictRule;
  /** Appended to a copy's name (before the extension of a file), e.g. ` (restored 2026-11-30)`. */
  copySuffix: string;
  items: Pick<UserPath, 'user' | 'path'>[];
  /** With server-side encryption: the module whose key directories travel with each file. */
  keyModule?: string;
  /**
   * Key pairs to compare before anything moves: `user` the users' own (per-user keys: a
   * difference refuses the restore), `master` the master key (a difference restores it).
   */
  keyPairs?: 'user' | 'master';
}

export interface PlacedFile {
  user: string;
  /** Relative to the user's home, as in the backup. */
  from: string;
  /** Relative to the user's home, where it is now (differs for copies). */
  to: string;
  /** Its key directory came from the backup too. */
  keys: boolean;
}

export interface Placement {
  placed: PlacedFile[];
  /** Per item: the outermost path that is new in the instance (to scan), relative to the home. */
  roots: { user: string; path: string }[];
  skipped: { user: string; path: string; reason: string }[];
  /** Files already as in the backup (same size and mtime): left alone. */
  unchanged: number;
  /** Items moved into the container because restored ones took their place. */
  replaced: number;
  warnings: string[];
}

export const PLACE_FILES = String.raw`
$request = json_decode(stream_get_contents(STDIN), true);
$staging = $request['staging'];
$data = $request['dataDir'];
$container = $request['container'];
$rule = $request['rule'];
$module = $request['keyModule'] ?? null;
$journal = [];
$result = ['placed' => [], 'roots' => [], 'skipped' => [], 'unchanged' => 0, 'replaced' => 0, 'warnings' => []];

function fail($message) { throw new RuntimeException($message); }
function exists($path) { return @lstat($path) !== false; }
function isRealDir($path) { return is_dir($path) && !is_link($path); }
function mtimeOf($path) { return lstat($path)['mtime']; }

/** Creates the missing directories down to $dir with the owner and mode of the nearest existing one. */
function makeParents($dir, &$journal) {
    $missing = [];
    for ($d = $dir; !exists($d); $d = dirname($d)) array_unshift($missing, $d);
    if (!isRealDir($d)) fail("$d is not a directory");
    $stat = stat($d);
    foreach ($missing as $m) {
        if (!mkdir($m, $stat['mode'] & 07777)) fail("could not create $m");
        chown($m, $stat['uid']);
        chgrp($m, $stat['gid']);
        chmod($m, $stat['mode'] & 07777);
        $journal[] = ['mkdir', $m];
    }
    return $missing;
}

function move($from, $to, &$journal) {
    if (!rename($from, $to)) fail("could not move $from to $to");
    $journal[] = ['rename', $from, $to];
}

/** Moves what is at $path (relative to the data directory) into the container. */
function setAside($relative) {
    global $data, $container, $journal, $result;
    if (!exists($container)) {
        if (!mkdir($container, 0700)) fail("could not create $container");
        $journal[] = ['mkdir', $container];
    }
    $aside = $container . '/' . $relative;
    if (!exists(dirname($aside))) {
        $made = [];
        for ($d = dirname($aside); !exists($d); $d = dirname($d)) array_unshift($made, $d);
        foreach ($made as $m) {
            if (!mkdir($m, 0700)) fail("could not create $m");
            $journal[] = ['mkdir', $m];
        }
    }
    move($data . '/' . $relative, $aside, $journal);
    $result['replaced']++;
}

/** The files (and symlinks) in a tree, relative to it ('' for the tree itself when it is one). */
function filesIn($root, $relative = '') {
    $path = $relative === '' ? $root : "$root/$relative";
    if (!isRealDir($path)) return [$relative];
    $found = [];
    foreach (scandir($path) as $name) {
        if ($name === '.' || $name === '..') continue;
        foreach (filesIn($root, $relative === '' ? $name : "$relative/$name") as $f) $found[] = $f;
    }
    return $found;
}

function placed($user, $from, $to, $tree) {
    global $result;
    foreach (filesIn($tree) as $f) {
        $result['placed'][] = ['user' => $user, 'from' => $f === '' ? $from : "$from/$f", 'to' => $f === '' ? $to : "$to/$f", 'keys' => false];
    }
}

/** A name beside $path that is free: 'name (restored DATE).ext', then '... 2', '... 3'. */
function copyName($path, $suffix) {
    $dir = dirname($path);
    $base = basename($path);
    $dot = strrpos($base, '.');
    $isDir = isRealDir($path);
    $stem = (!$isDir && $dot !== false && $dot > 0) ? substr($base, 0, $dot) : $base;
    $ext = (!$isDir && $dot !== false && $dot > 0) ? substr($base, $dot) : '';
    for ($n = 1; ; $n++) {
        $candidate = "$dir/$stem$suffix" . ($n > 1 ? " $n" : '') . $ext;
        if (!exists($candidate)) return $candidate;
    }
}

/** Puts the staged $src at $dst (both relative to their roots: USER/...) by the rule. */
function merge($user, $from, $to) {
    global $staging, $data, $rule, $journal, $result;
    $src = "$staging/$user/$from";
    $dst = "$data/$user/$to";
    if (!exists($dst)) {
        makeParents(dirname($dst), $journal);
        move($src, $dst, $journal);
        placed($user, $from, $to, $dst);
        return;
    }
    if (isRealDir($src) && isRealDir($dst)) {
        foreach (scandir($src) as $name) {
            if ($name === '.' || $name === '..') continue;
            merge($user, "$from/$name", "$to/$name");
        }
        return;
    }
    $srcStat = lstat($src);
    $dstStat = lstat($dst);
    if (!isRealDir($src) && !isRealDir($dst) && $srcStat['size'] === $dstStat['size'] && $srcStat['mtime'] === $dstStat['mtime']) {
        $result['unchanged']++;
        return;
    }
    if ($rule !== 'overwrite') {
        if (isRealDir($dst) !== isRealDir($src)) {
            $result['skipped'][] = ['user' => $user, 'path' => $to, 'reason' => isRealDir($dst) ? 'a folder is in its place' : 'a file is in its place'];
            return;
        }
        if ($dstStat['mtime'] > $srcStat['mtime']) {
            $result['skipped'][] = ['user' => $user, 'path' => $to, 'reason' => 'the current file is newer'];
            return;
        }
    }
    setAside("$user/$to");
    move($src, $dst, $journal);
    placed($user, $from, $to, $dst);
}

/** The key directory of each placed file, from the backup's keys of the file it was. */
function placeKeys() {
    global $staging, $data, $module, $journal, $result;
    foreach ($result['placed'] as $i => $file) {
        $user = $file['user'];
        $src = "$staging/$user/files_encryption/keys/{$file['from']}/$module";
        if (!isRealDir($src)) continue;
        $dst = "$data/$user/files_encryption/keys/{$file['to']}/$module";
        if (exists($dst)) setAside("$user/files_encryption/keys/{$file['to']}/$module");
        makeParents(dirname($dst), $journal);
        move($src, $dst, $journal);
        $result['placed'][$i]['keys'] = true;
    }
}

function sameFile($a, $b) {
    return is_file($a) && is_file($b) && hash_file('sha256', $a) === hash_file('sha256', $b);
}

/** Refuses per-user keys that changed; brings back a master key that changed. */
function checkKeyPairs($kind, $users) {
    global $staging, $data, $module, $journal, $result;
    if ($kind === 'user') {
        foreach ($users as $user) {
            $key = "$user/files_encryption/$module/$user.publicKey";
            if (!is_file("$staging/$key")) fail("REFUSE:The backup holds no public key of $user ($key): the restored files' keys cannot be checked against the instance.");
            if (!is_file("$data/$key")) fail("REFUSE:$user has no key pair in the instance ($key is missing): the restored files could not be decrypted. Log in as $user once (ownCloud creates the keys), or restore the whole instance.");
            if (!sameFile("$staging/$key", "$data/$key")) fail("REFUSE:$user's key pair changed since the backup (their public key differs): the restored files' keys were made for the old pair and could not be read.");
        }
        return;
    }
    $dir = "files_encryption/$module";
    $keys = is_dir("$staging/$dir") ? array_values(array_filter(scandir("$staging/$dir"), function ($n) { return strpos($n, 'master_') === 0; })) : [];
    if (!$keys) fail("REFUSE:The backup holds no master key ($dir/master_*): the restored files' keys cannot be checked against the instance.");
    foreach ($keys as $name) {
        if (sameFile("$staging/$dir/$name", "$data/$dir/$name")) continue;
        if (exists("$data/$dir/$name")) setAside("$dir/$name");
        makeParents("$data/$dir", $journal);
        move("$staging/$dir/$name", "$data/$dir/$name", $journal);
        $result['warnings'][] = "The master key $name in the instance was missing or differed from the backup's: the backup's is back (the one it replaced is kept with the previous state).";
    }
}

try {
    $users = array_values(array_unique(array_map(function ($i) { return $i['user']; }, $request['items'])));
    if ($module !== null && isset($request['keyPairs'])) checkKeyPairs($request['keyPairs'], $users);
    foreach ($request['items'] as $item) {
        $user = $item['user'];
        $from = $item['path'];
        if (!exists("$staging/$user/$from")) fail("the backup's $user/$from was not extracted");
        if (!isRealDir("$data/$user")) fail("REFUSE:$user has no home in the data directory ($data/$user): is the user still there?");
        $to = $from;
        if ($rule === 'as-copy' && exists("$data/$user/$from")) {
            $to = substr(copyName("$data/$user/$from", $request['copySuffix']), strlen("$data/$user/"));
        }
        // The outermost path that is new, for the scan: the item, or its first missing parent.
        $root = $to;
        for ($p = dirname($to); $p !== '.' && !exists("$data/$user/$p"); $p = dirname($p)) $root = $p;
        merge($user, $from, $to);
        $result['roots'][] = ['user' => $user, 'path' => $root];
    }
    if ($module !== null) placeKeys();
} catch (Throwable $e) {
    // Undo this run's changes, newest first.
    foreach (array_reverse($journal) as $step) {
        if ($step[0] === 'rename') @rename($step[2], $step[1]);
        else @rmdir($step[1]);
    }
    $message = $e->getMessage();
    fwrite(STDERR, (strpos($message, 'REFUSE:') === 0 ? substr($message, 7) : $message . ' (every change of this restore was undone)') . "\n");
    exit(strpos($message, 'REFUSE:') === 0 ? 3 : 4);
}
echo json_encode($result, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE);
`;

/** Runs the placement on the host as root; the request travels on stdin. */
export async function placeFiles(
  host: Host,
  root: string[],
  request: PlacementRequest,
): Promise<Placement> {
  const result = reached(
    host,
    await host.run([...root, 'php', '-d', 'display_errors=stderr', '-r', PLACE_FILES], {
      input: JSON.stringify(request),
      shielded: true,
    }),
  );
  const said = stderrTail(result.stderr);
  // 3: refused before anything moved; 4: failed, and every move was undone.
  if (result.exitCode === 3) throw new BackupError(`${said} Nothing was changed on the target.`);
  if (result.exitCode !== 0)
    throw new BackupError(
      `Putting the restored files in place failed on ${host.label} (exit ${result.exitCode}): ${said || 'no message'}`,
    );
  return JSON.parse(result.stdout) as Placement;
}
