<?php
/**
 * A stand-in for ownCloud's and Nextcloud's `occ`, run as `php occ ...` like the real one.
 * It implements what a backup uses: `maintenance:mode` (--on, --off, no flag = print the
 * state), `status` and `config:system:get`, and what a restore uses:
 * `maintenance:data-fingerprint` (a new `data-fingerprint` in config.php, which tells sync
 * clients the server went back in time), reading and writing config/config.php the way
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
    default:
        fwrite(STDERR, "Command \"$command\" is not defined.\n");
        $exit = 1;
}

holdIfAsked($holdFile, $heldFile, $args, 'after');

$after = !empty(loadConfig($configFile)['maintenance']);
record($recordFile, $args, $before, $after, $exit);
exit($exit);
