<?php
/**
 * A stand-in for ownCloud's and Nextcloud's `occ`, run as `php occ ...` like the real one.
 * It implements what a backup uses: `maintenance:mode` (--on, --off, no flag = print the
 * state), `status` and `config:system:get`, and what a restore uses:
 * `maintenance:data-fingerprint` (a new `data-fingerprint` in config.php, which tells sync
 * clients the server went back in time) and `files:scan --path=/USER/files/...` (see
 * scanPath), reading and writing config/config.php the way
 * ownCloud does (include it, change $CONFIG, write it back with var_export under a lock).
 * It refuses to run as anyone but the owner of config.php, as the real console does, and
 * appends a JSON line per call to occ-calls.jsonl beside the installation, so tests can see
 * who switched maintenance mode when.
 *
 * For tests that need a deterministic moment: when a file occ-hold beside the installation
 * holds this call's arguments (e.g. `maintenance:mode --on`), occ does the work, then writes
 * its pid to occ-held and waits until occ-hold is removed before it answers and exits.
 * With `before ` in front of the arguments it waits before doing any work instead.
 */

$configFile = __DIR__ . '/config/config.php';
$recordFile = dirname(__DIR__) . '/occ-calls.jsonl';
$holdFile = dirname(__DIR__) . '/occ-hold';
$heldFile = dirname(__DIR__) . '/occ-held';
$args = array_slice($argv, 1);

function loadConfig($file) {
    $CONFIG = [];
    include $file;
    return $CONFIG;
}

function writeConfig($file, $config) {
    $handle = fopen($file, 'r+');
    flock($handle, LOCK_EX);
    ftruncate($handle, 0);
    fwrite($handle, "<?php\n\$CONFIG = " . var_export($config, true) . ";\n");
    fflush($handle);
    flock($handle, LOCK_UN);
    fclose($handle);
    if (function_exists('opcache_invalidate')) {
        opcache_invalidate($file, true);
    }
}

function record($recordFile, $args, $before, $after, $exit) {
    $user = posix_getpwuid(posix_geteuid());
    $line = json_encode([
        'time' => microtime(true),
        'user' => $user ? $user['name'] : (string) posix_geteuid(),
        'args' => $args,
        'maintenanceBefore' => $before,
        'maintenanceAfter' => $after,
        'exit' => $exit,
    ]) . "\n";
    file_put_contents($recordFile, $line, FILE_APPEND | LOCK_EX);
}

$owner = fileowner($configFile);
if ($owner !== posix_geteuid()) {
    $current = posix_getpwuid(posix_geteuid());
    $configUser = posix_getpwuid($owner);
    echo "Console has to be executed with the user that owns the file config/config.php\n";
    echo "Current user: " . $current['name'] . "\n";
    echo "Owner of config.php: " . $configUser['name'] . "\n";
    echo "Try adding 'sudo -u " . $configUser['name'] . " ' to the beginning of the command (without the single quotes)\n";
    record($recordFile, $args, null, null, 1);
    exit(1);
}

function holdIfAsked($holdFile, $heldFile, $args, $when) {
    $wanted = is_file($holdFile) ? trim(file_get_contents($holdFile)) : null;
    if ($wanted !== ($when === 'before' ? 'before ' : '') . implode(' ', $args)) {
        return;
    }
    file_put_contents($heldFile, (string) getmypid());
    do {
        usleep(10000);
        clearstatcache();
    } while (file_exists($holdFile));
}

/** The instance's database through PDO, from config.php's values, as ownCloud connects. */
function connectDatabase($config) {
    $type = $config['dbtype'] ?? 'sqlite3';
    $name = $config['dbname'] ?? 'owncloud';
    if ($type === 'sqlite3' || $type === 'sqlite') {
        return new PDO('sqlite:' . $config['datadirectory'] . '/' . $name . '.db', null, null,
            [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
    }
    $host = $config['dbhost'] ?? 'localhost';
    $where = '';
    if (preg_match('/^(.*):(\/.*)$/', $host, $m)) {
        $where = ($type === 'mysql' ? 'unix_socket=' : 'host=') . $m[2];
    } elseif (preg_match('/^(.*):(\d+)$/', $host, $m)) {
        $where = 'host=' . $m[1] . ';port=' . $m[2];
    } else {
        $where = 'host=' . $host;
    }
    $dsn = ($type === 'mysql' ? 'mysql:' : 'pgsql:') . $where . ';dbname=' . $name;
    return new PDO($dsn, $config['dbuser'] ?? '', $config['dbpassword'] ?? '',
        [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
}

function mimetypeOf($name, $isDir) {
    if ($isDir) return 'httpd/unix-directory';
    $ext = strtolower(pathinfo($name, PATHINFO_EXTENSION));
    $map = ['txt' => 'text/plain', 'md' => 'text/markdown', 'jpg' => 'image/jpeg', 'bin' => 'application/octet-stream'];
    return $map[$ext] ?? 'application/octet-stream';
}

/**
 * What ownCloud's scanner does to the file cache for one path (`/USER/files/SOME/PATH`), as
 * far as a restore is concerned: every file and folder at and below the path gets a row
 * (created, or updated to what is on disk: size, mtime, a new etag), folders the size of
 * their contents, rows of entries no longer on disk are removed, and missing parent folders
 * get rows too. Like the real scanner on an encrypted instance, it knows nothing about
 * encryption: it writes the size on disk and `encrypted = 0`. Unlike the real one it does
 * not propagate sizes and etags to the parents that already had rows.
 */
function scanPath($config, $path) {
    if (!preg_match('#^/?([^/]+)/(files(?:/.*)?)$#', rtrim($path, '/'), $m)) {
        throw new Exception("Invalid path: $path");
    }
    list(, $user, $relative) = $m;
    $home = $config['datadirectory'] . '/' . $user;
    if (!file_exists($home . '/' . $relative)) {
        throw new Exception("Home storage for user $user not writable or path $relative not found");
    }
    $db = connectDatabase($config);
    $prefix = $config['dbtableprefix'] ?? 'oc_';
    $db->beginTransaction();
    $storage = $db->prepare("SELECT numeric_id FROM {$prefix}storages WHERE id = ?");
    $storage->execute(['home::' . $user]);
    $storageId = $storage->fetchColumn();
    if ($storageId === false) {
        throw new Exception("No home storage for user $user");
    }
    $mimeIds = [];
    $mimeId = function ($mime) use ($db, $prefix, &$mimeIds) {
        if (isset($mimeIds[$mime])) return $mimeIds[$mime];
        $find = $db->prepare("SELECT id FROM {$prefix}mimetypes WHERE mimetype = ?");
        $find->execute([$mime]);
        $id = $find->fetchColumn();
        if ($id === false) {
            $db->prepare("INSERT INTO {$prefix}mimetypes (mimetype) VALUES (?)")->execute([$mime]);
            $find->execute([$mime]);
            $id = $find->fetchColumn();
        }
        return $mimeIds[$mime] = (int) $id;
    };
    $find = $db->prepare("SELECT fileid FROM {$prefix}filecache WHERE storage = ? AND path_hash = ?");
    $idOf = function ($p) use ($find, $storageId) {
        $find->execute([$storageId, md5($p)]);
        $id = $find->fetchColumn();
        return $id === false ? null : (int) $id;
    };
    $write = function ($p, $size) use ($db, $prefix, $storageId, $home, $idOf, $mimeId) {
        $full = $home . '/' . $p;
        $isDir = is_dir($full);
        $name = basename($p);
        $mime = mimetypeOf($name, $isDir);
        $parentPath = dirname($p) === '.' ? '' : dirname($p);
        $parent = $idOf($parentPath);
        $mtime = filemtime($full);
        $etag = bin2hex(random_bytes(7));
        $id = $idOf($p);
        if ($id === null) {
            $db->prepare("INSERT INTO {$prefix}filecache (storage, path, path_hash, parent, name, mimetype, mimepart, size, mtime, storage_mtime, encrypted, unencrypted_size, etag, permissions, checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, '')")
                ->execute([$storageId, $p, md5($p), $parent ?? -1, $name, $mimeId($mime), $mimeId(explode('/', $mime)[0]), $size, $mtime, $mtime, $etag, $isDir ? 31 : 27]);
        } else {
            $db->prepare("UPDATE {$prefix}filecache SET size = ?, mtime = ?, storage_mtime = ?, encrypted = 0, etag = ?, checksum = '' WHERE fileid = ?")
                ->execute([$size, $mtime, $mtime, $etag, $id]);
        }
    };
    // Missing parents first, outermost first.
    $parents = [];
    for ($p = dirname($relative); $p !== '.' && $p !== ''; $p = dirname($p)) {
        if ($idOf($p) === null) array_unshift($parents, $p);
    }
    foreach ($parents as $p) $write($p, 0);
    $scan = function ($p) use (&$scan, $home, $write, $db, $prefix, $storageId, $idOf) {
        $full = $home . '/' . $p;
        if (!is_dir($full)) {
            $write($p, filesize($full));
            return filesize($full);
        }
        $write($p, 0);
        $total = 0;
        $names = [];
        foreach (scandir($full) as $name) {
            if ($name === '.' || $name === '..') continue;
            $names[$name] = true;
            $total += $scan($p . '/' . $name);
        }
        $write($p, $total);
        // Rows of entries that are gone (and everything below them).
        $children = $db->prepare("SELECT fileid, name FROM {$prefix}filecache WHERE parent = ?");
        $children->execute([$idOf($p)]);
        foreach ($children->fetchAll(PDO::FETCH_NUM) as list($id, $name)) {
            if (isset($names[$name])) continue;
            $gone = [(int) $id];
            while ($gone) {
                $one = array_pop($gone);
                $below = $db->prepare("SELECT fileid FROM {$prefix}filecache WHERE parent = ?");
                $below->execute([$one]);
                foreach ($below->fetchAll(PDO::FETCH_COLUMN) as $child) $gone[] = (int) $child;
                $db->prepare("DELETE FROM {$prefix}filecache WHERE fileid = ?")->execute([$one]);
            }
        }
        return $total;
    };
    $scan($relative);
    $db->commit();
    echo "Scanning files for 1 user\n";
}

holdIfAsked($holdFile, $heldFile, $args, 'before');
$config = loadConfig($configFile);
$before = !empty($config['maintenance']);
$command = $args[0] ?? 'list';
$options = array_slice($args, 1);
$json = in_array('--output=json', $options, true) || in_array('--output=json_pretty', $options, true);
$exit = 0;

switch ($command) {
    case 'maintenance:mode':
        if (in_array('--on', $options, true)) {
            $config['maintenance'] = true;
            writeConfig($configFile, $config);
            echo "Maintenance mode enabled\n";
        } elseif (in_array('--off', $options, true)) {
            $config['maintenance'] = false;
            writeConfig($configFile, $config);
            echo "Maintenance mode disabled\n";
        } else {
            echo $before ? "Maintenance mode is currently enabled\n" : "Maintenance mode is currently disabled\n";
        }
        break;
    case 'maintenance:data-fingerprint':
        // ownCloud sets md5 of the current time; the random part keeps two calls distinct.
        $config['data-fingerprint'] = md5(microtime(true) . random_bytes(8));
        writeConfig($configFile, $config);
        echo "Updated data-fingerprint to " . $config['data-fingerprint'] . "\n";
        break;
    case 'status':
        $version = $config['version'] ?? '';
        $status = [
            'installed' => !empty($config['installed']),
            'version' => $version,
            'versionstring' => implode('.', array_slice(explode('.', $version), 0, 3)),
            'edition' => 'Community',
            'maintenance' => !empty($config['maintenance']),
        ];
        if ($json) {
            echo json_encode($status) . "\n";
        } else {
            foreach ($status as $key => $value) {
                echo "  - $key: " . (is_bool($value) ? ($value ? 'true' : 'false') : $value) . "\n";
            }
        }
        break;
    case 'config:system:get':
        $names = array_values(array_filter($options, function ($o) { return substr($o, 0, 2) !== '--'; }));
        $value = $config;
        foreach ($names as $name) {
            if (!is_array($value) || !array_key_exists($name, $value)) {
                $value = null;
                $exit = 1;
                break;
            }
            $value = $value[$name];
        }
        if ($exit === 0) {
            if ($json) {
                echo json_encode($value) . "\n";
            } elseif (is_bool($value)) {
                echo ($value ? 'true' : 'false') . "\n";
            } elseif (is_array($value)) {
                echo implode("\n", $value) . "\n";
            } else {
                echo $value . "\n";
            }
        }
        break;
    case 'files:scan':
        $paths = [];
        foreach ($options as $o) {
            if (substr($o, 0, 7) === '--path=') $paths[] = substr($o, 7);
        }
        if (!$paths) {
            fwrite(STDERR, "files:scan: this stand-in needs --path\n");
            $exit = 1;
            break;
        }
        try {
            foreach ($paths as $p) scanPath($config, $p);
        } catch (Exception $e) {
            fwrite(STDERR, $e->getMessage() . "\n");
            $exit = 1;
        }
        break;
    default:
        fwrite(STDERR, "Command \"$command\" is not defined.\n");
        $exit = 1;
}

holdIfAsked($holdFile, $heldFile, $args, 'after');

$after = !empty(loadConfig($configFile)['maintenance']);
record($recordFile, $args, $before, $after, $exit);
exit($exit);
