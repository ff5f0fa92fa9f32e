<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\Env;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * fluxo.* ini entries (PHP_INI_ALL) and FLUXO_<KEY> environment overrides.
 */
final class IniConfigTest extends FluxoTestCase
{
    private const KEYS = [
        'local_dir', 'work_dir', 'format', 'storage', 'max_concurrent_tasks', 'buffer_size',
        'queue_timeout', 'shutdown_timeout', 'compression_level', 'workers', 'key_prefix', 'log_level', 'log_file',
    ];

    public function testModuleIsLoaded(): void
    {
        self::assertTrue(extension_loaded('fluxo'));
        self::assertContains('fluxo', array_map('strtolower', get_loaded_extensions()));
    }

    public function testAllIniKeysAreRegistered(): void
    {
        $all = ini_get_all('fluxo', false);
        self::assertIsArray($all);
        foreach (self::KEYS as $key) {
            self::assertArrayHasKey('fluxo.' . $key, $all, "ini entry fluxo.{$key}");
            self::assertIsString(ini_get('fluxo.' . $key));
        }
        self::assertSame(Env::$localDir, ini_get('fluxo.local_dir'));
        self::assertSame(Env::$workDir, ini_get('fluxo.work_dir'));
    }

    public function testDefaults(): void
    {
        // a child without any -d fluxo.* setting and without FLUXO_* variables
        $env = [];
        foreach (getenv() as $name => $value) {
            if (!str_starts_with((string) $name, 'FLUXO_')) {
                $env[(string) $name] = (string) $value;
            }
        }
        $child = ChildPhp::run(<<<'PHP'
            $out = [];
            foreach (['format', 'storage', 'max_concurrent_tasks', 'buffer_size', 'queue_timeout',
                      'shutdown_timeout', 'compression_level', 'workers', 'key_prefix', 'log_level',
                      'log_file'] as $k) {
                $out[$k] = ini_get('fluxo.' . $k);
            }
            echo json_encode($out), "\n";
            PHP, [], ['fluxo.work_dir' => null, 'fluxo.local_dir' => null], $env);
        self::assertSame(0, $child->exitCode, $child->describe());
        self::assertSame(
            [
                'format' => 'csv',
                'storage' => 'local',
                'max_concurrent_tasks' => '4',
                'buffer_size' => '8388608',
                'queue_timeout' => '300',
                'shutdown_timeout' => '300',
                'compression_level' => '2',
                'workers' => '0',
                'key_prefix' => '',
                'log_level' => 'warn',
                'log_file' => '',
            ],
            $child->json()
        );
    }

    public function testIniSetWorksAtRuntime(): void
    {
        $old = ini_set('fluxo.log_level', 'error');
        self::assertNotFalse($old, 'fluxo.* are PHP_INI_ALL');
        self::assertSame('error', ini_get('fluxo.log_level'));
        ini_set('fluxo.log_level', (string) $old);
        self::assertSame($old, ini_get('fluxo.log_level'));
    }

    public function testPhpDashDSettingIsUsedByTheChild(): void
    {
        $dir = Env::$root . '/dash-d-dir';
        $child = ChildPhp::run(<<<'PHP'
            $e = new Fluxo\Exporter(['columns' => ['a']]);
            $e->addRow(['x']);
            $r = $e->finish();
            echo json_encode(['path' => $r->path, 'ini' => ini_get('fluxo.local_dir')]), "\n";
            PHP, [], ['fluxo.local_dir' => $dir]);
        self::assertSame(0, $child->exitCode, $child->describe());
        $out = $child->json();
        self::assertSame($dir, $out['ini']);
        self::assertStringStartsWith($dir . '/', $out['path']);
        self::assertFileExists($out['path']);
    }

    public function testLogFormatShapesTheExtensionsLogLines(): void
    {
        $code = <<<'PHP'
            $e = new Fluxo\Exporter(['columns' => ['a']]);
            $e->addRow(['x']);
            echo json_encode(['taskId' => $e->finish()->taskId]), "\n";
            PHP;
        $lines = [];
        foreach (['json', 'text'] as $format) {
            $child = ChildPhp::run($code, [], ['fluxo.log_level' => 'info', 'fluxo.log_format' => $format]);
            self::assertSame(0, $child->exitCode, $child->describe());
            $taskId = $child->json()['taskId'];
            $completed = array_values(array_filter(
                explode("\n", $child->stderr),
                static fn (string $line): bool => str_contains($line, 'export completed'),
            ));
            self::assertCount(1, $completed, "one completion line in $format: " . $child->stderr);
            $lines[$format] = $completed[0];
            self::assertStringContainsString($taskId, $completed[0]);
        }
        $json = json_decode($lines['json'], true);
        self::assertIsArray($json, 'json: one object a line');
        self::assertSame('INFO', $json['level']);
        self::assertSame('export completed', $json['message']);
        self::assertNull(json_decode($lines['text']), 'text: not JSON');
        self::assertMatchesRegularExpression('/INFO .*export completed .*task_id=/', $lines['text']);
    }

    /**
     * A cancelled export is logged at info with its reason: an Exporter a
     * script dropped says so, in the log as in its status.
     */
    public function testACancelledExportIsLoggedWithItsReason(): void
    {
        $child = ChildPhp::run(<<<'PHP'
            $e = new Fluxo\Exporter(['columns' => ['a']]);
            $e->addRow(['x']);
            $taskId = $e->taskId();
            unset($e);
            for ($i = 0; $i < 200 && Fluxo\Exporter::status($taskId)?->state !== 'CANCELLED'; $i++) {
                usleep(10000);
            }
            echo json_encode(['taskId' => $taskId]), "\n";
            PHP, [], ['fluxo.log_level' => 'info', 'fluxo.log_format' => 'json']);
        self::assertSame(0, $child->exitCode, $child->describe());
        $taskId = $child->json()['taskId'];
        $cancelled = array_values(array_filter(
            array_map(static fn (string $line): mixed => json_decode($line, true), explode("\n", $child->stderr)),
            static fn (mixed $line): bool => is_array($line) && ($line['message'] ?? null) === 'export cancelled',
        ));
        self::assertCount(1, $cancelled, $child->stderr);
        self::assertSame('INFO', $cancelled[0]['level']);
        self::assertSame($taskId, $cancelled[0]['task_id']);
        self::assertStringStartsWith('the Exporter was freed before finish() or cancel()', $cancelled[0]['reason']);
    }

    public function testEnvironmentVariableOverridesIni(): void
    {
        $iniDir = Env::$root . '/ini-dir';
        $envDir = Env::$root . '/env-dir';
        $env = [];
        foreach (getenv() as $name => $value) {
            $env[(string) $name] = (string) $value;
        }
        $env['FLUXO_LOCAL_DIR'] = $envDir;
        $child = ChildPhp::run(<<<'PHP'
            $e = new Fluxo\Exporter(['columns' => ['a']]);
            $e->addRow(['x']);
            $r = $e->finish();
            echo json_encode(['path' => $r->path]), "\n";
            PHP, [], ['fluxo.local_dir' => $iniDir], $env);
        self::assertSame(0, $child->exitCode, $child->describe());
        $path = $child->json()['path'];
        self::assertStringStartsWith($envDir . '/', $path, 'FLUXO_LOCAL_DIR overrides fluxo.local_dir');
        self::assertFileExists($path);
        self::assertDirectoryDoesNotExist($iniDir);
    }

    public function testAnEmptyEnvironmentVariableCountsAsUnset(): void
    {
        $iniDir = Env::$root . '/ini-dir-kept';
        $script = ChildPhp::script(<<<'PHP'
            $e = new Fluxo\Exporter(['columns' => ['a']]);
            $e->addRow(['x']);
            echo json_encode(['path' => $e->finish()->path]), "\n";
            PHP);
        // proc_open() leaves out variables with empty values: env(1) sets it.
        $command = ['env', 'FLUXO_LOCAL_DIR=', ...ChildPhp::command($script, [], ['fluxo.local_dir' => $iniDir])];
        $child = ChildPhp::runCommand($command, null, $script);
        self::assertSame(0, $child->exitCode, $child->describe());
        self::assertStringStartsWith($iniDir . '/', $child->json()['path'], 'FLUXO_LOCAL_DIR= keeps fluxo.local_dir');
    }

    /**
     * @return iterable<string, array{array<string, string>, string}>
     */
    public static function badIniProvider(): iterable
    {
        // Under PHP-FPM the working directory is each script's folder.
        yield 'relative work_dir' => [
            ['fluxo.work_dir' => 'fluxo-work'],
            'fluxo.work_dir must be an absolute path, not "fluxo-work"',
        ];
        yield 'relative local_dir' => [
            ['fluxo.local_dir' => './exports'],
            'fluxo.local_dir must be an absolute path, not "./exports"',
        ];
        yield 'base URL without its secret' => [
            ['fluxo.public_base_url' => 'https://dl.example.com', 'fluxo.download_secret' => ''],
            'fluxo.public_base_url needs fluxo.download_secret',
        ];
        yield 'base URL without a scheme' => [
            ['fluxo.public_base_url' => 'dl.example.com:9091', 'fluxo.download_secret' => 's'],
            'fluxo.public_base_url must be an http:// or https:// URL',
        ];
    }

    /**
     * @dataProvider badIniProvider
     * @param array<string, string> $ini
     */
    public function testABadIniSettingIsAnInvalidOptionException(array $ini, string $message): void
    {
        $child = ChildPhp::run(<<<'PHP'
            // Where a relative folder would land, were it taken.
            chdir(sys_get_temp_dir());
            try {
                new Fluxo\Exporter(['columns' => ['a']]);
                echo json_encode(['error' => null]), "\n";
            } catch (Fluxo\InvalidOptionException $e) {
                echo json_encode(['error' => $e->getMessage()]), "\n";
            }
            PHP, [], $ini);
        self::assertSame(0, $child->exitCode, $child->describe());
        self::assertStringContainsString($message, (string) $child->json()['error']);
    }

    public function testStatusFilesLiveInWorkDir(): void
    {
        $r = $this->exportOne(['columns' => ['a']], [['x']]);
        $file = self::workDir() . '/tasks/' . $r->taskId . '.json';
        self::assertFileExists($file);
        self::assertIsArray(json_decode((string) file_get_contents($file), true), 'status file is JSON');
    }
}
