<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Exporter;
use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * PHP's time limit running out while the script waits inside the extension. On a
 * non-thread-safe PHP the limit counts the CPU of every thread, the writers' too,
 * and PHP kills the process (exit 124, "terminated") when the waiting thread does
 * not get back to PHP within `hard_timeout`: under FPM, the worker and every export
 * in it. The wait must end instead, so that PHP raises its ordinary fatal error.
 */
final class TimeLimitTest extends FluxoTestCase
{
    /**
     * @return iterable<string, array{bool, string}>
     */
    public static function finishProvider(): iterable
    {
        // A finish() that gives up fails the export: nobody gets its file.
        yield 'finish()' => [false, 'FAILED'];
        // After finishAsync() the file was promised: it is still made.
        yield 'finish() after finishAsync()' => [true, 'COMPLETED'];
    }

    /**
     * @dataProvider finishProvider
     */
    public function testATimeLimitRunningOutInFinishEndsTheScriptNotTheProcess(bool $async, string $state): void
    {
        // A writer far behind: the whole file is queued (a large buffer), deflated
        // at level 9 on one thread, so that finish() waits for seconds of CPU.
        $code = <<<'PHP'
            $e = new Fluxo\Exporter(['format' => 'xlsx', 'columns' => ['n', 'text', 'x']]);
            fwrite(STDERR, 'task ' . $e->taskId() . "\n");
            $wide = str_repeat('lorem ipsum dolor sit amet ', 20);
            for ($i = 0; $i < 300000; $i += 1000) {
                $rows = [];
                for ($j = $i; $j < $i + 1000; $j++) {
                    $rows[] = [$j, $j . $wide . md5((string) $j) . sha1((string) $j), $j * 1.5];
                }
                $e->addBatch($rows);
            }
            $id = $e->taskId();
            register_shutdown_function(static function () use ($id): void {
                fwrite(STDERR, 'shutdown ran: ' . (error_get_last()['message'] ?? 'no error') . "\n");
                fwrite(STDERR, 'state then: ' . Fluxo\Exporter::status($id)?->state . "\n");
            });
            if (ASYNC) {
                $e->finishAsync();
            }
            set_time_limit(1);
            $e->finish();
            echo "finished within the limit\n";
            PHP;
        $child = ChildPhp::run(str_replace('ASYNC', $async ? 'true' : 'false', $code), [], [
            'fluxo.buffer_size' => (string) (1 << 30),
            'fluxo.compression_level' => '9',
            'fluxo.workers' => '1',
            'hard_timeout' => '2',
        ]);
        self::assertStringNotContainsString('finished within the limit', $child->stdout, $child->describe());
        self::assertNotSame(124, $child->exitCode, 'killed by the hard timeout: ' . $child->describe());
        self::assertSame(255, $child->exitCode, $child->describe());
        self::assertMatchesRegularExpression(
            '/shutdown ran: Maximum execution time of 1 second exceeded/',
            $child->stderr,
            'PHP\'s own fatal error, with shutdown functions run'
        );
        self::assertMatchesRegularExpression('/task ([0-9a-f-]{36})/', $child->stderr);
        preg_match('/task ([0-9a-f-]{36})/', $child->stderr, $m);
        $status = Exporter::status($m[1]);
        self::assertNotNull($status);
        self::assertSame($state, $status->state, (string) $status->error);
        if ($state === 'FAILED') {
            self::assertStringContainsString('time limit (max_execution_time) ran out', (string) $status->error);
            self::assertStringContainsString('state then: FAILED', $child->stderr, 'the script\'s shutdown functions read the final state');
        }
    }
}
