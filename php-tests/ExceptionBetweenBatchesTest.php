<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Exporter;
use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * User code throws between addBatch() calls. The Exporter is destroyed with
 * the last reference to it (the frame that held it, or an exception trace
 * that holds it as an argument), which cancels its task like any Exporter
 * destroyed without finish(): CANCELLED, no file left, and the process
 * exports as before.
 */
final class ExceptionBetweenBatchesTest extends FluxoTestCase
{
    /**
     * @return iterable<string, array{string}>
     */
    public static function formatProvider(): iterable
    {
        yield 'csv' => ['csv'];
        yield 'xlsx' => ['xlsx'];
    }

    /**
     * @return list<list<mixed>>
     */
    private static function batch(int $from, int $n): array
    {
        $rows = [];
        for ($i = $from; $i < $from + $n; $i++) {
            $rows[] = [$i, 'row ' . $i];
        }
        return $rows;
    }

    /**
     * Two batches, then the source of the rows fails.
     *
     * @return \Generator<int, list<list<mixed>>>
     */
    private static function failingSource(): \Generator
    {
        yield self::batch(0, 2000);
        yield self::batch(2000, 2000);
        throw new \RuntimeException('database connection lost');
    }

    /**
     * The Exporter lives in this frame only.
     */
    private static function exportFromFailingSource(string $format, ?string &$taskId): void
    {
        $e = new Exporter(['format' => $format, 'columns' => ['n', 's'], 'total_rows' => 10000]);
        $taskId = $e->taskId();
        foreach (self::failingSource() as $rows) {
            $e->addBatch($rows);
        }
        $e->finish();
    }

    /**
     * The Exporter is an argument: a trace that records arguments keeps it.
     */
    private static function fill(Exporter $e): void
    {
        foreach (self::failingSource() as $rows) {
            $e->addBatch($rows);
        }
    }

    private function assertCancelledAndClean(string $taskId): void
    {
        $s = $this->waitForState($taskId);
        self::assertNotNull($s);
        self::assertSame('CANCELLED', $s->state, json_encode(self::snapshot($s)));
        // Not the text of an explicit cancel(): it says what happened.
        self::assertStringStartsWith('the Exporter was freed before finish() or cancel()', (string) $s->error);
        self::assertNull($s->url);
        $clean = $this->eventually(static fn () => self::taskArtifacts($taskId) === [], 400);
        self::assertTrue($clean, 'files left: ' . json_encode(self::taskArtifacts($taskId)));
    }

    /**
     * @dataProvider formatProvider
     */
    public function testTheExceptionCancelsTheExportAndTheNextOneWorks(string $format): void
    {
        $taskId = null;
        try {
            self::exportFromFailingSource($format, $taskId);
            self::fail('the exception propagates');
        } catch (\RuntimeException $ex) {
            self::assertSame('database connection lost', $ex->getMessage());
        }
        self::assertIsString($taskId);
        $this->assertCancelledAndClean($taskId);

        $r = $this->export(['format' => $format, 'columns' => ['n', 's']], [self::batch(0, 100), self::batch(100, 100)]);
        $this->assertResult($r, $format, 200);
    }

    public function testAnExporterInTheTraceEndsWhenTheExceptionIsReleased(): void
    {
        $previous = ini_set('zend.exception_ignore_args', '0');
        try {
            $e = new Exporter(['columns' => ['n', 's']]);
            $taskId = $e->taskId();
            try {
                self::fill($e);
                self::fail('the exception propagates');
            } catch (\RuntimeException $ex) {
                unset($e);
                // The trace's copy of the argument keeps the export open.
                $s = Exporter::status($taskId);
                self::assertNotNull($s);
                self::assertContains($s->state, ['QUEUED', 'PROCESSING'], json_encode(self::snapshot($s)));
                unset($ex);
            }
            $this->assertCancelledAndClean($taskId);
        } finally {
            ini_set('zend.exception_ignore_args', (string) $previous);
        }
    }

    /**
     * @dataProvider formatProvider
     */
    public function testAnUncaughtExceptionEndingTheScriptCancels(string $format): void
    {
        $result = ChildPhp::run(<<<'PHP'
            $e = new Fluxo\Exporter(['format' => $argv[1], 'columns' => ['n']]);
            echo json_encode(['id' => $e->taskId()]), "\n";
            $e->addBatch([[1], [2], [3]]);
            throw new RuntimeException('payment API timed out');
            PHP, [$format]);
        self::assertSame(255, $result->exitCode, $result->describe());
        self::assertStringContainsString('payment API timed out', $result->stderr);
        $this->assertCancelledAndClean($result->json()['id']);
    }
}
