<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * A Rust panic inside an extension method reaches PHP as a catchable
 * Fluxo\ExportException, not a crash, and the process goes on working.
 *
 * The panic comes from the extension's one test hook: `new Exporter()`
 * panics while FLUXO_TEST_PANIC is in the environment (src/php/mod.rs,
 * panic_if_asked). It runs in a child process, so a regression kills the
 * child, not this PHPUnit run.
 */
final class PanicTest extends FluxoTestCase
{
    public function testAPanicIsAnExportExceptionAndTheProcessGoesOn(): void
    {
        $result = ChildPhp::run(<<<'PHP'
            $caught = [];
            for ($i = 0; $i < 3; $i++) {
                try {
                    new Fluxo\Exporter(['columns' => ['n']]);
                    $caught[] = 'no exception';
                } catch (Fluxo\ExportException $e) {
                    $caught[] = get_class($e) . ': ' . $e->getMessage();
                }
            }
            // Unset: the same process exports as usual.
            putenv('FLUXO_TEST_PANIC');
            $e = new Fluxo\Exporter(['format' => 'csv', 'columns' => ['n', 's']]);
            $e->addBatch([[1, 'a'], [2, 'b']]);
            $r = $e->finish();
            echo json_encode(['caught' => $caught, 'records' => $r->records, 'path' => $r->path]), "\n";
            PHP, [], [], getenv() + ['FLUXO_TEST_PANIC' => '1']);

        self::assertSame(0, $result->exitCode, $result->describe());
        $out = $result->json();
        self::assertSame(
            array_fill(0, 3, 'Fluxo\ExportException: internal error in the fluxo extension: FLUXO_TEST_PANIC is set'),
            $out['caught'],
            $result->describe()
        );
        self::assertStringContainsString('panicked', $result->stderr, 'it was a real panic: ' . $result->describe());
        self::assertSame(2, $out['records']);
        self::assertSame([['n', 's'], ['1', 'a'], ['2', 'b']], $this->readCsv($out['path']));
    }
}
