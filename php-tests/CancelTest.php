<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\ExportException;
use Fluxo\Exporter;
use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * cancel(), and an Exporter destroyed without finish(): task CANCELLED, no file left.
 */
final class CancelTest extends FluxoTestCase
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
    private static function rows(int $n): array
    {
        $rows = [];
        for ($i = 0; $i < $n; $i++) {
            $rows[] = [$i, 'row ' . $i, $i * 0.5];
        }
        return $rows;
    }

    private function assertCancelledAndClean(string $taskId): void
    {
        $s = $this->waitForState($taskId);
        self::assertNotNull($s, 'status of a cancelled task is still known');
        self::assertSame('CANCELLED', $s->state, json_encode(self::snapshot($s)));
        self::assertNull($s->url);
        $left = $this->eventually(static fn () => self::taskArtifacts($taskId) === [], 400) ? [] : self::taskArtifacts($taskId);
        self::assertSame([], $left, 'no export or spool file is left for a cancelled task');
    }

    /**
     * @dataProvider formatProvider
     */
    public function testCancel(string $format): void
    {
        $e = new Exporter(['format' => $format, 'columns' => ['n', 's', 'f'], 'total_rows' => 10000]);
        $id = $e->taskId();
        self::assertSame(5000, $e->addBatch(self::rows(5000)));
        $e->cancel();
        $this->assertCancelledAndClean($id);

        try {
            $e->addBatch(self::rows(1));
            self::fail('addBatch() after cancel() must throw');
        } catch (ExportException $ex) {
            self::assertNotSame('', $ex->getMessage());
        }
        try {
            $e->addRow([1, 'x', 1.0]);
            self::fail('addRow() after cancel() must throw');
        } catch (ExportException $ex) {
            self::assertNotSame('', $ex->getMessage());
        }
        try {
            $e->finish();
            self::fail('finish() after cancel() must throw');
        } catch (ExportException $ex) {
            self::assertNotSame('', $ex->getMessage());
        }
        self::assertSame('CANCELLED', Exporter::status($id)?->state);
        self::assertSame([], self::taskArtifacts($id));
    }

    /**
     * @dataProvider formatProvider
     */
    public function testCancelBeforeAnyRow(string $format): void
    {
        $e = new Exporter(['format' => $format, 'columns' => ['a']]);
        $id = $e->taskId();
        $e->cancel();
        $this->assertCancelledAndClean($id);
        $this->expectException(ExportException::class);
        $e->finish();
    }

    /**
     * @dataProvider formatProvider
     */
    public function testTheStatusSaysCancelledWhenCancelReturns(string $format): void
    {
        for ($round = 0; $round < 5; $round++) {
            $e = new Exporter(['format' => $format, 'columns' => ['n', 's', 'f']]);
            if ($round > 0) {
                $e->addBatch(self::rows(2000 * $round));
            }
            $e->cancel();
            $s = Exporter::status($e->taskId());
            self::assertSame('CANCELLED', $s?->state, "round {$round}");
            self::assertSame('the export was cancelled', $s->error);
        }
    }

    /**
     * @dataProvider formatProvider
     */
    public function testUnsetWithoutFinishCancels(string $format): void
    {
        $e = new Exporter(['format' => $format, 'columns' => ['n', 's', 'f']]);
        $id = $e->taskId();
        $e->addBatch(self::rows(2000));
        unset($e);
        $this->assertCancelledAndClean($id);
        self::assertStringStartsWith('the Exporter was freed before finish() or cancel()', (string) Exporter::status($id)?->error);
    }

    public function testExporterGoingOutOfScopeCancels(): void
    {
        $make = static function (): string {
            $e = new Exporter(['columns' => ['n', 's', 'f']]);
            $e->addBatch(self::rows(100));
            return $e->taskId();
        };
        $id = $make();
        $this->assertCancelledAndClean($id);
    }

    /**
     * @dataProvider formatProvider
     */
    public function testCancelAfterFinishIsANoOp(string $format): void
    {
        $e = new Exporter(['format' => $format, 'columns' => ['n', 's', 'f']]);
        $e->addBatch(self::rows(10));
        $r = $e->finish();
        $e->cancel();
        $s = Exporter::status($r->taskId);
        self::assertNotNull($s);
        self::assertSame('COMPLETED', $s->state);
        self::assertSame(100, $s->progress);
        $this->assertResult($r, $format, 10);
        unset($e);
        self::assertSame('COMPLETED', Exporter::status($r->taskId)?->state, 'destroying a finished Exporter changes nothing');
        self::assertFileExists($r->path);
    }

    public function testChildScriptEndingWithoutFinishCancels(): void
    {
        $result = ChildPhp::run(<<<'PHP'
            $e = new Fluxo\Exporter(['format' => $argv[1], 'columns' => ['n']]);
            $rows = [];
            for ($i = 0; $i < 1000; $i++) {
                $rows[] = [$i];
            }
            $e->addBatch($rows);
            echo json_encode(['id' => $e->taskId()]), "\n";
            // script ends: the Exporter is destroyed without finish()
            PHP, ['csv']);
        self::assertSame(0, $result->exitCode, $result->describe());
        $id = $result->json()['id'];
        $this->assertCancelledAndClean($id);
    }
    /**
     * pcntl_fork() while an export runs: the child holds a copy of the Exporter but
     * none of the threads writing it. Its calls are refused at once (finish() used to
     * wait for ever), its status() reads the file, and its exit does not wait
     * fluxo.shutdown_timeout for the parent's export.
     */
    public function testAForkedChildCannotUseItsParentsExport(): void
    {
        if (!function_exists('pcntl_fork')) {
            self::markTestSkipped('needs pcntl');
        }
        $child = ChildPhp::run(<<<'PHP'
            $marker = tempnam(sys_get_temp_dir(), 'fluxo-fork-');
            unlink($marker);
            $e = new Fluxo\Exporter(['columns' => ['n']]);
            $e->addBatch([[1], [2]]);
            $pid = pcntl_fork();
            if ($pid === 0) {
                try {
                    $e->finish();
                    $finish = 'returned';
                } catch (Fluxo\ExportException $ex) {
                    $finish = $ex->getMessage();
                }
                for ($i = 0; $i < 3000 && !file_exists($marker); $i++) {
                    usleep(10000);
                }
                $status = Fluxo\Exporter::status($e->taskId());
                fwrite(STDERR, json_encode(['finish' => $finish, 'state' => $status?->state]) . "\n");
                exit(0);
            }
            $r = $e->finish();
            touch($marker);
            pcntl_waitpid($pid, $childStatus);
            echo json_encode(['child_exit' => pcntl_wexitstatus($childStatus), 'records' => $r->records]), "\n";
            PHP, [], ['fluxo.shutdown_timeout' => '20']);
        self::assertSame(0, $child->exitCode, $child->describe());
        $parent = $child->json();
        self::assertSame(['child_exit' => 0, 'records' => 2], $parent);
        self::assertMatchesRegularExpression('/"finish":"export [0-9a-f-]+ belongs to process \d+: a child of fork\(\) cannot use it"/', $child->stderr);
        self::assertStringContainsString('"state":"COMPLETED"', $child->stderr, 'the file, not the copy of fork time');
        self::assertStringNotContainsString(
            'still running after fluxo.shutdown_timeout',
            $child->stderr,
            'the child did not wait for the parent\'s export'
        );
    }

    /**
     * A child made without fork()'s handlers (glibc's _Fork(), which FFI can call, or a raw system
     * call) is not counted as a fork: the rows it adds may be gathered, but finish() tells it by its
     * process id and refuses at once, where it would wait for ever for a writer the child does not have.
     */
    public function testAChildForkedWithoutForkHandlersIsRefusedWhenItFinishes(): void
    {
        if (!function_exists('pcntl_fork') || !extension_loaded('ffi')) {
            self::markTestSkipped('needs pcntl and FFI');
        }
        $child = ChildPhp::run(<<<'PHP'
            $libc = FFI::cdef('int _Fork(void);', 'libc.so.6');
            $e = new Fluxo\Exporter(['columns' => ['n']]);
            $e->addRow([1]);
            $pid = $libc->_Fork();
            if ($pid === 0) {
                pcntl_alarm(20); // a hang ends the child, and its exit status fails the test
                try {
                    $e->finish();
                    $finish = 'returned';
                } catch (Fluxo\ExportException $ex) {
                    $finish = $ex->getMessage();
                }
                fwrite(STDERR, json_encode(['finish' => $finish]) . "\n");
                exit(0);
            }
            pcntl_waitpid($pid, $status);
            $e->addRow([2]);
            $r = $e->finish();
            $exit = pcntl_wifexited($status) ? pcntl_wexitstatus($status) : -1;
            echo json_encode(['child_exit' => $exit, 'records' => $r->records]), "\n";
            PHP, [], ['ffi.enable' => '1']);
        self::assertSame(0, $child->exitCode, $child->describe());
        self::assertSame(['child_exit' => 0, 'records' => 2], $child->json());
        self::assertMatchesRegularExpression(
            '/"finish":"export [0-9a-f-]+ belongs to process \d+: a child of fork\(\) cannot use it"/',
            $child->stderr
        );
    }
}
