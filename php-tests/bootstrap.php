<?php

/**
 * PHPUnit bootstrap for the Fluxo extension tests.
 *
 * - refuses to run (exit 1, message on STDERR) unless extension "fluxo" is loaded;
 * - gives this run its own fluxo.local_dir / fluxo.work_dir under a fresh
 *   sys_get_temp_dir() subdirectory (removed at the end unless FLUXO_KEEP_TMP=1);
 * - exposes Fluxo\Tests\Support\ChildPhp, which starts a child `php` with the same
 *   extension (-d extension=$FLUXO_SO) and the same fluxo.work_dir/fluxo.local_dir,
 *   so parent and child share the status directory.
 */

declare(strict_types=1);

use Fluxo\Tests\Support\Env;

(static function (): void {
    $die = static function (string $message): void {
        fwrite(STDERR, "\n*** Fluxo PHPUnit bootstrap: {$message}\n\n");
        exit(1);
    };

    if (!extension_loaded('fluxo')) {
        $die(
            "PHP extension 'fluxo' is NOT loaded. Run the suite as:\n"
            . "    FLUXO_SO=/path/to/libfluxo.so php -d extension=\$FLUXO_SO /usr/bin/phpunit -c php-tests/phpunit.xml"
        );
    }

    spl_autoload_register(static function (string $class): void {
        $prefix = 'Fluxo\\Tests\\Support\\';
        if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
            return;
        }
        $file = __DIR__ . '/Support/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
        if (is_file($file)) {
            require $file;
        }
    });

    // The .so for child processes: FLUXO_SO, else the default cargo target dir.
    $so = getenv('FLUXO_SO');
    if ($so === false || $so === '') {
        $target = getenv('CARGO_TARGET_DIR');
        if ($target === false || $target === '') {
            $target = rtrim((string) getenv('HOME'), '/') . '/.cache/fluxo/target';
        }
        $so = $target . '/php/libfluxo.so';
    }
    if (!is_file($so)) {
        $die("FLUXO_SO does not point to the built extension (tried '{$so}'); child processes need it.");
    }

    // Env vars FLUXO_<KEY> override php.ini; make sure none leaks in from the caller's shell.
    foreach (['LOCAL_DIR', 'WORK_DIR', 'FORMAT', 'STORAGE', 'KEY_PREFIX', 'SHUTDOWN_TIMEOUT', 'QUEUE_TIMEOUT'] as $key) {
        if (getenv('FLUXO_' . $key) !== false) {
            fwrite(STDERR, "Fluxo PHPUnit bootstrap: ignoring environment variable FLUXO_{$key} for this run\n");
            putenv('FLUXO_' . $key);
        }
    }

    $root = rtrim(sys_get_temp_dir(), '/') . '/fluxo-phpunit-' . getmypid() . '-' . bin2hex(random_bytes(4));
    if (!mkdir($root, 0777, true) && !is_dir($root)) {
        $die("cannot create temp dir {$root}");
    }
    $root = (string) realpath($root);
    $localDir = $root . '/exports';
    $workDir = $root . '/work';

    foreach (['fluxo.local_dir' => $localDir, 'fluxo.work_dir' => $workDir] as $key => $value) {
        if (ini_set($key, $value) === false) {
            $die("ini_set('{$key}') failed: is the ini entry registered as PHP_INI_ALL?");
        }
        if (ini_get($key) !== $value) {
            $die("ini_get('{$key}') does not return the value just set");
        }
    }

    $python = getenv('FLUXO_PYTHON');

    Env::$root = $root;
    Env::$localDir = $localDir;
    Env::$workDir = $workDir;
    Env::$so = (string) realpath($so);
    Env::$python = ($python === false || $python === '') ? 'python3' : $python;
    Env::$tools = __DIR__ . '/tools';

    fwrite(STDERR, "Fluxo tests: extension {$so}, temp dir {$root}\n");

    register_shutdown_function(static function () use ($root): void {
        if (getenv('FLUXO_KEEP_TMP') === '1') {
            fwrite(STDERR, "Fluxo tests: kept temp dir {$root}\n");
            return;
        }
        Env::removeTree($root);
    });
})();
