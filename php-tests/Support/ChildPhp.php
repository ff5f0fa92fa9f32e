<?php

declare(strict_types=1);

namespace Fluxo\Tests\Support;

/**
 * Runs PHP code in a separate `php` process that loads the same extension:
 *
 *     PHP_BINARY -d extension=$FLUXO_SO -d fluxo.work_dir=... -d fluxo.local_dir=... script.php args...
 *
 * so the child shares this run's status directory and export directory.
 * The code is written to a temp script; it must not start with "<?php".
 * Child scripts report back by printing a JSON line on stdout.
 */
final class ChildPhp
{
    private static int $counter = 0;

    /**
     * @param list<string>          $args
     * @param array<string, string|null> $ini  extra -d settings (override the defaults below;
     *                                          null = do not pass that setting at all)
     * @return list<string>
     */
    public static function command(string $scriptFile, array $args = [], array $ini = []): array
    {
        $settings = [
            'fluxo.work_dir' => Env::$workDir,
            'fluxo.local_dir' => Env::$localDir,
            'display_errors' => 'stderr',
            'error_reporting' => '-1',
        ];
        foreach ($ini as $key => $value) {
            $settings[$key] = $value;
        }
        $cmd = [PHP_BINARY, '-d', 'extension=' . Env::$so];
        foreach ($settings as $key => $value) {
            if ($value === null) {
                continue;
            }
            $cmd[] = '-d';
            $cmd[] = $key . '=' . $value;
        }
        $cmd[] = $scriptFile;
        foreach ($args as $arg) {
            $cmd[] = $arg;
        }
        return $cmd;
    }

    public static function script(string $code): string
    {
        $dir = Env::$root . '/scripts';
        if (!is_dir($dir)) {
            mkdir($dir, 0777, true);
        }
        $file = sprintf('%s/child-%d-%d.php', $dir, getmypid(), ++self::$counter);
        $prelude = "<?php\n\ndeclare(strict_types=1);\n\n"
            . "if (!extension_loaded('fluxo')) {\n"
            . "    fwrite(STDERR, \"child: extension fluxo is not loaded\\n\");\n"
            . "    exit(99);\n"
            . "}\n\n";
        file_put_contents($file, $prelude . $code . "\n");
        return $file;
    }

    /**
     * Runs the code to completion.
     *
     * @param list<string>               $args
     * @param array<string, string|null> $ini
     * @param array<string, string>|null $env  full environment (null = inherit)
     */
    public static function run(string $code, array $args = [], array $ini = [], ?array $env = null): ChildResult
    {
        $script = self::script($code);
        return self::runCommand(self::command($script, $args, $ini), $env, $script);
    }

    /**
     * Runs a command (an argv list, no shell) to completion, its output
     * captured in files named after `$outputs` (a temp name if null).
     *
     * @param list<string>               $command
     * @param array<string, string>|null $env full environment (null = inherit)
     */
    public static function runCommand(array $command, ?array $env = null, ?string $outputs = null): ChildResult
    {
        $temporary = $outputs === null;
        $outputs ??= (string) tempnam(sys_get_temp_dir(), 'fluxo-child-');
        $out = $outputs . '.out';
        $err = $outputs . '.err';
        $process = proc_open(
            $command,
            [0 => ['file', '/dev/null', 'r'], 1 => ['file', $out, 'w'], 2 => ['file', $err, 'w']],
            $pipes,
            null,
            $env
        );
        if (!is_resource($process)) {
            throw new \RuntimeException('proc_open failed for ' . implode(' ', $command));
        }
        $result = new ChildResult(proc_close($process), (string) file_get_contents($out), (string) file_get_contents($err));
        if ($temporary) {
            array_map('unlink', [$outputs, $out, $err]);
        }
        return $result;
    }

    /**
     * Starts the code and returns at once; stdin and stdout are pipes
     * (RunningChild::writeLine() / readLine()).
     *
     * @param list<string>               $args
     * @param array<string, string|null> $ini
     * @param array<string, string>|null $env
     */
    public static function start(string $code, array $args = [], array $ini = [], ?array $env = null): RunningChild
    {
        $script = self::script($code);
        $err = $script . '.err';
        $process = proc_open(
            self::command($script, $args, $ini),
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['file', $err, 'w']],
            $pipes,
            null,
            $env
        );
        if (!is_resource($process)) {
            throw new \RuntimeException('proc_open failed for ' . $script);
        }
        return new RunningChild($process, $pipes[0], $pipes[1], $err);
    }
}
