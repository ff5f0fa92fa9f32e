<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Exporter;
use Fluxo\InvalidOptionException;
use Fluxo\TaskStatus;
use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\Env;
use Fluxo\Tests\Support\FluxoTestCase;
use Fluxo\Tests\Support\IniOverride;
use Fluxo\Tests\Support\XlsxReader;

/**
 * finishAsync() and Exporter::status(), read from this process and from other processes.
 */
final class AsyncStatusTest extends FluxoTestCase
{
    /**
     * Child script: polls Exporter::status($argv[1]) until the task is in one of the
     * states listed in $argv[2] (comma separated) and prints the distinct snapshots seen.
     * The loop is bounded (no timing assertion is made on it).
     */
    private const POLL_SCRIPT = <<<'PHP'
        $id = $argv[1];
        $until = explode(',', $argv[2]);
        $minRecords = (int) ($argv[3] ?? 0);
        $samples = [];
        $last = null;
        $final = null;
        for ($k = 0; $k < 6000; $k++) {
            $s = Fluxo\Exporter::status($id);
            $snap = $s === null ? null : [
                'class' => get_class($s),
                'taskId' => $s->taskId,
                'state' => $s->state,
                'progress' => $s->progress,
                'records' => $s->records,
                'totalRows' => $s->totalRows,
                'url' => $s->url,
                'path' => $s->path,
                'error' => $s->error,
                'bytes' => $s->bytes,
            ];
            if ($snap !== $last) {
                $samples[] = $snap;
                $last = $snap;
            }
            $final = $snap;
            if ($snap !== null && in_array($snap['state'], $until, true) && $snap['records'] >= $minRecords) {
                break;
            }
            usleep(10000);
        }
        echo json_encode(['pid' => getmypid(), 'samples' => array_slice($samples, 0, 500), 'final' => $final]), "\n";
        PHP;

    /**
     * @return list<list<mixed>>
     */
    private static function rows(int $from, int $n): array
    {
        $rows = [];
        for ($i = $from; $i < $from + $n; $i++) {
            $rows[] = [$i, 'name ' . $i, $i / 4];
        }
        return $rows;
    }

    /**
     * @return iterable<string, array{string}>
     */
    public static function formatProvider(): iterable
    {
        yield 'csv' => ['csv'];
        yield 'xlsx' => ['xlsx'];
    }

    private function countDataRows(string $format, string $path): int
    {
        if ($format === 'csv') {
            return count($this->readCsv($path)) - 1;
        }
        $total = 0;
        foreach (XlsxReader::summary($path)['sheets'] as $sheet) {
            $total += $sheet['row_count'] - 1;
        }
        return $total;
    }

    /**
     * @dataProvider formatProvider
     */
    public function testFinishAsyncPolledFromAnotherProcess(string $format): void
    {
        $total = 50000;
        $e = new Exporter(['format' => $format, 'columns' => ['n', 's', 'f'], 'total_rows' => $total]);
        for ($b = 0; $b < 10; $b++) {
            self::assertSame(($b + 1) * 5000, $e->addBatch(self::rows($b * 5000, 5000)));
        }
        $id = $e->finishAsync();
        self::assertIsString($id);
        self::assertSame($e->taskId(), $id, 'finishAsync() returns the task id');
        self::assertMatchesRegularExpression(self::UUID_V7, $id);

        $child = ChildPhp::run(self::POLL_SCRIPT, [$id, 'COMPLETED,FAILED,CANCELLED']);
        self::assertSame(0, $child->exitCode, $child->describe());
        $out = $child->json();
        self::assertNotSame(getmypid(), $out['pid'], 'status was read by a separate process');

        $final = $out['final'];
        self::assertNotNull($final, 'the child sees the task');
        self::assertSame(TaskStatus::class, $final['class']);
        self::assertSame('COMPLETED', $final['state'], json_encode($final));
        self::assertSame($id, $final['taskId']);
        self::assertSame(100, $final['progress']);
        self::assertSame($total, $final['records']);
        self::assertSame($total, $final['totalRows']);
        self::assertNull($final['error']);
        self::assertIsString($final['path']);
        self::assertFileExists($final['path']);
        self::assertSame('file://' . $final['path'], $final['url']);
        clearstatcache();
        self::assertSame(filesize($final['path']), $final['bytes']);
        self::assertStringEndsWith('.' . $format, $final['path']);
        self::assertSame($total, $this->countDataRows($format, $final['path']));

        // every snapshot the child saw is consistent and never goes backwards
        $prevProgress = 0;
        $prevRecords = 0;
        foreach ($out['samples'] as $i => $snap) {
            self::assertNotNull($snap, "sample {$i}: a known task never reads as unknown");
            self::assertContains($snap['state'], ['QUEUED', 'PROCESSING', 'UPLOADING', 'COMPLETED'], "sample {$i}");
            self::assertGreaterThanOrEqual($prevProgress, $snap['progress'], "sample {$i}: progress is monotonic");
            self::assertGreaterThanOrEqual($prevRecords, $snap['records'], "sample {$i}: records is monotonic");
            self::assertLessThanOrEqual(100, $snap['progress']);
            self::assertLessThanOrEqual($total, $snap['records']);
            self::assertSame($total, $snap['totalRows']);
            if ($snap['state'] !== 'COMPLETED') {
                self::assertNull($snap['url'], "sample {$i}: url is only set when COMPLETED");
            }
            $prevProgress = $snap['progress'];
            $prevRecords = $snap['records'];
        }

        // and this process agrees
        $s = Exporter::status($id);
        self::assertInstanceOf(TaskStatus::class, $s);
        self::assertSame('COMPLETED', $s->state);
        self::assertSame($final['path'], $s->path);
    }

    public function testProgressIsVisibleToAnotherProcessMidway(): void
    {
        $e = new Exporter(['columns' => ['n', 's', 'f'], 'total_rows' => 100000]);
        $id = $e->taskId();
        self::assertSame(50000, $e->addBatch(self::rows(0, 50000)));

        // another process waits until it sees the first 50,000 rows written
        $child = ChildPhp::run(self::POLL_SCRIPT, [$id, 'PROCESSING,QUEUED,UPLOADING,COMPLETED,FAILED,CANCELLED', '50000']);
        self::assertSame(0, $child->exitCode, $child->describe());
        $final = $child->json()['final'];
        self::assertNotNull($final);
        self::assertSame('PROCESSING', $final['state'], json_encode($final));
        self::assertSame(50000, $final['records'], 'records written so far');
        self::assertSame(50, $final['progress'], 'progress = records / total_rows');
        self::assertSame(100000, $final['totalRows']);
        self::assertNull($final['url']);
        self::assertNull($final['path']);
        self::assertNull($final['error']);

        // this process sees the same
        $s = $this->eventually(static function () use ($id) {
            $s = Exporter::status($id);
            return $s !== null && $s->records === 50000 ? $s : null;
        });
        self::assertInstanceOf(TaskStatus::class, $s);
        self::assertSame(50, $s->progress);
        self::assertSame('PROCESSING', $s->state);

        $e->addBatch(self::rows(50000, 50000));
        $r = $e->finish();
        $this->assertResult($r, 'csv', 100000);
        $s = Exporter::status($id);
        self::assertSame('COMPLETED', $s?->state);
        self::assertSame(100, $s?->progress);
        self::assertSame(100000, $s?->records);
    }

    public function testStatusRightAfterConstruction(): void
    {
        $e = new Exporter(['columns' => ['a'], 'total_rows' => 10]);
        $s = Exporter::status($e->taskId());
        self::assertInstanceOf(TaskStatus::class, $s);
        self::assertSame($e->taskId(), $s->taskId);
        self::assertContains($s->state, ['QUEUED', 'PROCESSING']);
        self::assertSame(0, $s->records);
        self::assertSame(0, $s->progress);
        self::assertSame(10, $s->totalRows);
        self::assertNull($s->url);
        self::assertNull($s->path);
        self::assertNull($s->error);
        self::assertIsInt($s->bytes);
        self::assertFileExists(self::workDir() . '/tasks/' . $e->taskId() . '.json', 'status file {work_dir}/tasks/{id}.json');
        $e->cancel();
    }

    public function testProgressIsZeroWithoutTotalRowsUntilCompleted(): void
    {
        $e = new Exporter(['columns' => ['n', 's', 'f']]);
        $id = $e->taskId();
        $e->addBatch(self::rows(0, 20000));
        $s = $this->eventually(static function () use ($id) {
            $s = Exporter::status($id);
            return $s !== null && $s->records === 20000 ? $s : null;
        });
        self::assertInstanceOf(TaskStatus::class, $s, 'records reaches 20000 while the task is open');
        self::assertSame('PROCESSING', $s->state);
        self::assertSame(0, $s->progress, 'no total_rows: progress stays 0 until COMPLETED');
        self::assertNull($s->totalRows);
        $e->finish();
        $s = Exporter::status($id);
        self::assertSame('COMPLETED', $s?->state);
        self::assertSame(100, $s?->progress);
        self::assertNull($s?->totalRows);
    }

    /**
     * @dataProvider formatProvider
     */
    public function testFinishAsyncThenUnsetStillCompletes(string $format): void
    {
        $e = new Exporter(['format' => $format, 'columns' => ['n', 's', 'f'], 'filename' => 'async-unset']);
        $e->addBatch(self::rows(0, 10000));
        $id = $e->finishAsync();
        unset($e);
        $s = $this->waitForState($id);
        self::assertNotNull($s);
        self::assertSame('COMPLETED', $s->state, json_encode(self::snapshot($s)));
        self::assertSame(10000, $s->records);
        self::assertSame(100, $s->progress);
        self::assertFileExists((string) $s->path);
        self::assertSame('async-unset.' . $format, basename((string) $s->path));
        self::assertSame('file://' . $s->path, $s->url);
        clearstatcache();
        self::assertSame(filesize((string) $s->path), $s->bytes);
        self::assertSame(10000, $this->countDataRows($format, (string) $s->path));
    }

    /**
     * A CLI script that calls finishAsync() and exits still gets its file:
     * module shutdown waits for the running task (fluxo.shutdown_timeout).
     *
     * @dataProvider formatProvider
     */
    public function testChildExitsRightAfterFinishAsync(string $format): void
    {
        $child = ChildPhp::run(<<<'PHP'
            $e = new Fluxo\Exporter(['format' => $argv[1], 'columns' => ['n', 's'], 'filename' => 'async-exit', 'total_rows' => 30000]);
            for ($b = 0; $b < 30; $b++) {
                $rows = [];
                for ($i = 0; $i < 1000; $i++) {
                    $n = $b * 1000 + $i;
                    $rows[] = [$n, str_repeat('x', 20) . $n];
                }
                $e->addBatch($rows);
            }
            echo json_encode(['id' => $e->finishAsync(), 'pid' => getmypid()]), "\n";
            PHP, [$format]);
        self::assertSame(0, $child->exitCode, $child->describe());
        $id = $child->json()['id'];
        self::assertMatchesRegularExpression(self::UUID_V7, $id);

        // the child has exited: its shutdown waited for the task, so it is done now
        $s = Exporter::status($id);
        self::assertInstanceOf(TaskStatus::class, $s);
        self::assertSame('COMPLETED', $s->state, json_encode(self::snapshot($s)));
        self::assertSame(30000, $s->records);
        self::assertSame(30000, $s->totalRows);
        self::assertSame(100, $s->progress);
        self::assertNull($s->error);
        self::assertFileExists((string) $s->path);
        self::assertSame('async-exit.' . $format, basename((string) $s->path));
        clearstatcache();
        self::assertSame(filesize((string) $s->path), $s->bytes);
        self::assertSame(30000, $this->countDataRows($format, (string) $s->path));
    }

    public function testUnknownIdIsNull(): void
    {
        self::assertNull(Exporter::status(self::randomUuidV4()));
        self::assertNull(Exporter::status(self::randomUuidV7()));
        self::assertNull(Exporter::status('00000000-0000-0000-0000-000000000000'));
    }

    /**
     * @return iterable<string, array{string}>
     */
    public static function malformedIdProvider(): iterable
    {
        yield 'path traversal' => ['../../etc/passwd'];
        yield 'not a uuid' => ['not-a-uuid'];
        yield 'empty' => [''];
        yield 'too short' => ['0190a6c4-0000-7000-8000-00000000000'];
        yield 'uuid plus traversal' => ['0190a6c4-0000-7000-8000-000000000000/../../x'];
        yield 'uuid with slash' => ['0190a6c4/0000-7000-8000-000000000000'];
        yield 'uuid with NUL' => ["0190a6c4-0000-7000-8000-000000000000\0"];
        yield 'non-hex' => ['0190a6c4-0000-7000-8000-00000000000z'];
    }

    /**
     * @dataProvider malformedIdProvider
     */
    public function testMalformedIdThrows(string $id): void
    {
        $this->expectException(InvalidOptionException::class);
        Exporter::status($id);
    }

    public function testExpiredStatusesAreRemovedWhenAnExportStarts(): void
    {
        $work = sys_get_temp_dir() . '/fluxo-retention-' . bin2hex(random_bytes(6));
        $ini = new IniOverride();
        try {
            $ini->set(['fluxo.work_dir' => $work, 'fluxo.status_retention' => 86400]);
            $export = static function (): string {
                $e = new Exporter(['columns' => ['a']]);
                $e->addRow(['x']);
                return $e->finish()->taskId;
            };
            $old = $export();
            $recent = $export();
            touch("$work/tasks/$old.json", time() - 2 * 86400);
            self::assertNotNull(Exporter::status($old), 'nothing removes it before an export starts');
            // The first export listed the folder already: the next may do it an hour later.
            $export();
            self::assertNotNull(Exporter::status($old), 'at most once an hour');
            touch("$work/tasks/.pruned", time() - 3600);
            $export();
            // It runs beside the export, on a thread of its own.
            for ($wait = 0; $wait < 100 && Exporter::status($old) !== null; $wait++) {
                usleep(50000);
            }
            self::assertNull(Exporter::status($old), 'finished two days ago, kept one');
            self::assertSame('COMPLETED', Exporter::status($recent)?->state);
        } finally {
            $ini->restore();
            Env::removeTree($work);
        }
    }

    /**
     * A status that ended longer than fluxo.status_retention ago is gone for
     * status() at once, even while its file waits for the hourly prune.
     */
    public function testAStatusPastItsRetentionIsUnknownBeforeItsFileIsPruned(): void
    {
        $work = sys_get_temp_dir() . '/fluxo-retention-' . bin2hex(random_bytes(6));
        $ini = new IniOverride();
        try {
            $ini->set(['fluxo.work_dir' => $work, 'fluxo.status_retention' => 86400]);
            $e = new Exporter(['columns' => ['a']]);
            $e->addRow(['x']);
            $id = $e->finish()->taskId;
            $file = "$work/tasks/$id.json";
            $status = json_decode((string) file_get_contents($file), true);
            self::assertIsArray($status);
            $status['updated_ms'] -= 86400 * 1000 - 60000;
            file_put_contents($file, json_encode($status));
            self::assertSame('COMPLETED', Exporter::status($id)?->state, 'a minute before it expires');
            $status['updated_ms'] -= 120000;
            file_put_contents($file, json_encode($status));
            self::assertNull(Exporter::status($id), 'a minute after');
            self::assertFileExists($file, 'the file itself waits for the prune');
            $ini->set(['fluxo.status_retention' => 0]);
            self::assertSame('COMPLETED', Exporter::status($id)?->state, 'kept for ever with 0');
        } finally {
            $ini->restore();
            Env::removeTree($work);
        }
    }

    public function testCompletedStatusCarriesTheFileHash(): void
    {
        $e = new Exporter(['columns' => ['a']]);
        $e->addBatch([['x'], ['y']]);
        $r = $e->finish();
        $s = Exporter::status($r->taskId);
        self::assertInstanceOf(TaskStatus::class, $s);
        self::assertSame($r->sha256, $s->sha256);
        self::assertSame(hash_file('sha256', $r->path), $s->sha256);
    }
}
