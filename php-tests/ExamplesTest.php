<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * Every example of the README's feature guide (examples/features/*.php) runs,
 * in its own PHP process, and writes the files it says it wrote.
 */
final class ExamplesTest extends FluxoTestCase
{
    /**
     * @return iterable<string, array{string}>
     */
    public function exampleProvider(): iterable
    {
        foreach (glob(dirname(__DIR__) . '/examples/features/*.php') ?: [] as $file) {
            yield basename($file) => [$file];
        }
    }

    /**
     * @dataProvider exampleProvider
     */
    public function testExampleRunsAndWritesItsFiles(string $file): void
    {
        $result = ChildPhp::runCommand(ChildPhp::command($file));
        [$out, $err] = [$result->stdout, $result->stderr];
        self::assertSame(0, $result->exitCode, "{$file}\n" . $result->describe());
        self::assertSame('', $err, 'no warnings or notices');
        self::assertGreaterThan(0, preg_match_all('/^wrote (\S+) /m', $out, $m), $out);
        foreach ($m[1] as $path) {
            self::assertFileExists($path);
            self::assertGreaterThan(0, filesize($path));
        }
    }

    public function testTheGuideHasEveryExample(): void
    {
        $readme = (string) file_get_contents(dirname(__DIR__) . '/README.md');
        foreach ($this->exampleProvider() as $name => [$file]) {
            self::assertStringContainsString('examples/features/' . $name, $readme, "README links {$name}");
        }
    }
}
