<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\ExportException;
use Fluxo\Exporter;
use Fluxo\InvalidOptionException;
use Fluxo\InvalidRowException;
use Fluxo\StorageException;
use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\Env;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * Exception classes: hierarchy, constructible from PHP, thrown and caught like any exception.
 */
final class ExceptionsTest extends FluxoTestCase
{
    public function testClassesExist(): void
    {
        foreach (
            [
                'Fluxo\\Exporter',
                'Fluxo\\ExportResult',
                'Fluxo\\TaskStatus',
                'Fluxo\\ExportException',
                'Fluxo\\InvalidRowException',
                'Fluxo\\InvalidOptionException',
                'Fluxo\\StorageException',
            ] as $class
        ) {
            self::assertTrue(class_exists($class), "class {$class} exists");
        }
    }

    public function testHierarchy(): void
    {
        self::assertSame(\Exception::class, get_parent_class(ExportException::class), 'ExportException extends \Exception');
        foreach ([InvalidRowException::class, InvalidOptionException::class, StorageException::class] as $class) {
            self::assertSame(ExportException::class, get_parent_class($class), "{$class} extends Fluxo\\ExportException");
            self::assertTrue(is_subclass_of($class, \Exception::class));
            self::assertTrue(is_subclass_of($class, \Throwable::class));
        }
    }

    /**
     * @return iterable<string, array{class-string<ExportException>}>
     */
    public static function exceptionClassProvider(): iterable
    {
        yield 'ExportException' => [ExportException::class];
        yield 'InvalidRowException' => [InvalidRowException::class];
        yield 'InvalidOptionException' => [InvalidOptionException::class];
        yield 'StorageException' => [StorageException::class];
    }

    /**
     * @dataProvider exceptionClassProvider
     * @param class-string<ExportException> $class
     */
    public function testConstructibleFromPhp(string $class): void
    {
        $ex = new $class('msg');
        self::assertInstanceOf($class, $ex);
        self::assertInstanceOf(ExportException::class, $ex);
        self::assertInstanceOf(\Exception::class, $ex);
        self::assertSame('msg', $ex->getMessage());
        self::assertSame(__FILE__, $ex->getFile());

        $empty = new $class();
        self::assertSame('', $empty->getMessage());
    }

    /**
     * @dataProvider exceptionClassProvider
     * @param class-string<ExportException> $class
     */
    public function testThrowAndCatchAsBaseClasses(string $class): void
    {
        try {
            throw new $class('thrown from PHP');
        } catch (ExportException $ex) {
            self::assertSame('thrown from PHP', $ex->getMessage());
            self::assertSame($class, get_class($ex));
        }
        try {
            throw new $class('again');
        } catch (\Exception $ex) {
            self::assertInstanceOf($class, $ex);
        }
    }

    public function testUserlandSubclass(): void
    {
        $ex = new class ('sub') extends InvalidRowException {
        };
        self::assertInstanceOf(InvalidRowException::class, $ex);
        self::assertInstanceOf(ExportException::class, $ex);
        self::assertSame('sub', $ex->getMessage());
    }

    public function testExtensionThrowsTheRightClasses(): void
    {
        try {
            new Exporter(['columns' => []]);
            self::fail('empty columns accepted');
        } catch (ExportException $ex) {
            self::assertSame(InvalidOptionException::class, get_class($ex));
        }

        $e = new Exporter(['columns' => ['a']]);
        try {
            $e->addRow([[1]]);
            self::fail('nested array accepted');
        } catch (ExportException $ex) {
            self::assertSame(InvalidRowException::class, get_class($ex));
        }
        $e->cancel();
        try {
            $e->finish();
            self::fail('finish() after cancel() accepted');
        } catch (\Exception $ex) {
            self::assertInstanceOf(ExportException::class, $ex);
        }
    }

    /**
     * A script run once as root leaves the default folders to root; PHP-FPM's
     * user is then refused there, at construction, and the error says whose
     * folder it is: the work folder, or the export folder where the file would
     * land after every row was written.
     */
    public function testAFolderOfAnotherUserIsNamedWhenWritingIsRefused(): void
    {
        if (!function_exists('posix_getuid') || posix_getuid() !== 0 || !is_executable('/usr/sbin/runuser')) {
            self::markTestSkipped('needs root and runuser, to run PHP as another user');
        }
        $dir = Env::scratchDir() . '/owned-by-root-' . bin2hex(random_bytes(4));
        foreach (['so', 'work', 'exports', 'open'] as $folder) {
            mkdir("{$dir}/{$folder}", 0755, true);
        }
        chmod("{$dir}/open", 0777);
        // The build's own folder may be closed to other users.
        copy(Env::$so, "{$dir}/so/fluxo.so");
        $script = ChildPhp::script(<<<'PHP'
            try {
                new Fluxo\Exporter(['columns' => ['a']]);
                echo 'created';
            } catch (Fluxo\StorageException $e) {
                echo $e->getMessage();
            }
            PHP);
        $nobody = (int) trim((string) shell_exec('id -u nobody'));
        $refusals = [
            'work' => ["{$dir}/work", "{$dir}/open/exports"],
            'exports' => ["{$dir}/open/work", "{$dir}/exports"],
        ];
        foreach ($refusals as $refused => [$workDir, $localDir]) {
            $child = ChildPhp::runCommand([
                '/usr/sbin/runuser', '-u', 'nobody', '--', PHP_BINARY, '-n',
                '-d', "extension={$dir}/so/fluxo.so",
                '-d', "fluxo.work_dir={$workDir}",
                '-d', "fluxo.local_dir={$localDir}",
                $script,
            ]);
            self::assertStringContainsString('Permission denied', $child->stdout, $child->stderr);
            self::assertStringContainsString(
                "the folder {$dir}/{$refused} belongs to user root (uid 0) and this process runs as user nobody (uid {$nobody}): "
                . 'give this user access, or set fluxo.local_dir and fluxo.work_dir to folders it owns',
                $child->stdout,
                $child->stderr
            );
        }
        Env::removeTree($dir);
    }
}
