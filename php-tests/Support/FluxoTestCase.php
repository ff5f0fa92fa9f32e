<?php

declare(strict_types=1);

namespace Fluxo\Tests\Support;

use Fluxo\Exporter;
use Fluxo\ExportResult;
use Fluxo\TaskStatus;
use PHPUnit\Framework\TestCase;

/**
 * Shared helpers of the Fluxo tests. Exporters are only ever held in local
 * variables so that a test never leaves a task running behind it.
 */
abstract class FluxoTestCase extends TestCase
{
    /** UUID version 7 (any case). */
    protected const UUID_V7 = '/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i';

    protected const TERMINAL_STATES = ['COMPLETED', 'FAILED', 'CANCELLED'];

    protected const ALL_STATES = ['QUEUED', 'PROCESSING', 'UPLOADING', 'COMPLETED', 'FAILED', 'CANCELLED'];

    protected static function localDir(): string
    {
        return Env::$localDir;
    }

    protected static function workDir(): string
    {
        return Env::$workDir;
    }

    /**
     * Runs a whole export: one addBatch() per element of $batches, then finish().
     *
     * @param array<string, mixed> $options
     * @param list<list<mixed>>    $batches
     */
    protected function export(array $options, array $batches): ExportResult
    {
        $exporter = new Exporter($options);
        $expected = 0;
        foreach ($batches as $batch) {
            $expected += count($batch);
            self::assertSame($expected, $exporter->addBatch($batch), 'addBatch() returns the running row count');
        }
        return $exporter->finish();
    }

    /**
     * Exports the rows in one batch and returns the result.
     *
     * @param array<string, mixed> $options
     * @param list<mixed>          $rows
     */
    protected function exportOne(array $options, array $rows): ExportResult
    {
        return $this->export($options, [$rows]);
    }

    /**
     * Reads a CSV file back with fgetcsv() (RFC 4180: no backslash escape).
     * A leading UTF-8 BOM is skipped.
     *
     * @return list<list<string|null>>
     */
    protected function readCsv(string $path, string $delimiter = ',', string $enclosure = '"'): array
    {
        $content = file_get_contents($path);
        self::assertIsString($content, "cannot read {$path}");
        if (str_starts_with($content, "\xEF\xBB\xBF")) {
            $content = substr($content, 3);
        }
        $fh = fopen('php://memory', 'w+b');
        fwrite($fh, $content);
        rewind($fh);
        $rows = [];
        while (($row = fgetcsv($fh, 0, $delimiter, $enclosure, '')) !== false) {
            $rows[] = $row;
        }
        fclose($fh);
        return $rows;
    }

    protected function hasBom(string $path): bool
    {
        $fh = fopen($path, 'rb');
        $head = (string) fread($fh, 3);
        fclose($fh);
        return $head === "\xEF\xBB\xBF";
    }

    /**
     * @return array{sheetnames: list<string>, sheets: list<array<string, mixed>>}
     */
    protected function readXlsx(string $path): array
    {
        return XlsxReader::dump($path);
    }

    /**
     * Data rows of a file in either format, header row dropped, every value as
     * the reader returns it (CSV: strings; XLSX: openpyxl values).
     *
     * @return list<list<mixed>>
     */
    protected function dataRows(ExportResult $result, bool $header = true): array
    {
        if ($result->format === 'csv') {
            $rows = $this->readCsv($result->path);
        } else {
            $rows = [];
            foreach ($this->readXlsx($result->path)['sheets'] as $sheet) {
                $sheetRows = $sheet['rows'];
                if ($header) {
                    array_shift($sheetRows);
                }
                array_push($rows, ...$sheetRows);
            }
            return $rows;
        }
        if ($header) {
            array_shift($rows);
        }
        return $rows;
    }

    /**
     * Checks every ExportResult property against the file on disk.
     */
    protected function assertResult(
        ExportResult $r,
        string $format,
        int $records,
        ?string $filename = null,
        ?string $localDir = null
    ): void {
        $localDir ??= self::localDir();
        self::assertInstanceOf(ExportResult::class, $r);
        self::assertIsString($r->taskId);
        self::assertMatchesRegularExpression(self::UUID_V7, $r->taskId, 'taskId is a UUID v7');
        self::assertSame($format, $r->format, 'format');
        self::assertSame($records, $r->records, 'records (data rows, header excluded)');
        self::assertIsString($r->path);
        self::assertStringStartsWith('/', $r->path, 'path is absolute');
        self::assertFileExists($r->path);
        self::assertTrue(is_file($r->path), 'path is a regular file');
        clearstatcache(true, $r->path);
        self::assertSame(filesize($r->path), $r->bytes, 'bytes equals filesize(path)');
        self::assertSame(hash_file('sha256', $r->path), $r->sha256, 'sha256 equals hash_file(sha256, path)');
        self::assertUrlOfPath($r->path, $r->url);
        self::assertSame(basename($r->path), $r->filename, 'filename is the file name of path');
        if ($filename !== null) {
            self::assertSame($filename, $r->filename, 'filename');
        }
        self::assertIsInt($r->durationMs);
        self::assertGreaterThanOrEqual(0, $r->durationMs);
        self::assertIsInt($r->sheets);
        self::assertGreaterThanOrEqual(1, $r->sheets);
        if ($format === 'csv') {
            self::assertSame(1, $r->sheets, 'sheets is 1 for csv');
        }

        // {local_dir}/{YYYY}/{MM}/{DD}/{task_id}/{filename}, UTC date
        $pattern = '#^' . preg_quote(rtrim($localDir, '/'), '#') . '/(\d{4})/(\d{2})/(\d{2})/'
            . preg_quote($r->taskId, '#') . '/' . preg_quote($r->filename, '#') . '$#';
        self::assertMatchesRegularExpression($pattern, $r->path, 'path layout {local_dir}/Y/m/d/{task_id}/{filename}');
        preg_match($pattern, $r->path, $m);
        $allowed = [gmdate('Y/m/d'), gmdate('Y/m/d', time() - 86400)];
        self::assertContains("{$m[1]}/{$m[2]}/{$m[3]}", $allowed, 'date directories are the UTC date of the export');
    }

    /**
     * url is 'file://'.path; a path with characters outside RFC 3986's unreserved set and "/"
     * may be percent-encoded (a valid URL), and must then decode to exactly the path.
     */
    protected static function assertUrlOfPath(string $path, ?string $url): void
    {
        self::assertIsString($url);
        if (preg_match('#^[A-Za-z0-9._~/-]*$#', $path) === 1) {
            self::assertSame('file://' . $path, $url, "url is 'file://'.path");
            return;
        }
        self::assertStringStartsWith('file://', $url);
        self::assertSame($path, rawurldecode(substr($url, 7)), 'url is the file:// URL of path');
    }

    /**
     * Polls $probe until it returns a truthy value (bounded; no timing assertion).
     * Returns that value, or the last (falsy) value when the bound is reached.
     */
    protected function eventually(callable $probe, int $maxPolls = 2400, int $sleepMicros = 25000): mixed
    {
        $value = null;
        for ($i = 0; $i < $maxPolls; $i++) {
            $value = $probe();
            if ($value) {
                return $value;
            }
            usleep($sleepMicros);
        }
        return $value;
    }

    /**
     * Polls Exporter::status() until the task is in one of $states.
     *
     * @param list<string> $states
     */
    protected function waitForState(string $taskId, array $states = self::TERMINAL_STATES, int $maxPolls = 4800): ?TaskStatus
    {
        $last = null;
        $this->eventually(static function () use ($taskId, $states, &$last): bool {
            $last = Exporter::status($taskId);
            return $last !== null && in_array($last->state, $states, true);
        }, $maxPolls);
        return $last;
    }

    /**
     * @return array<string, mixed>
     */
    protected static function snapshot(?TaskStatus $s): array
    {
        if ($s === null) {
            return ['status' => null];
        }
        return [
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
    }

    /**
     * Every file or directory under local_dir and {work_dir}/spool whose path names the task.
     *
     * @return list<string>
     */
    protected static function taskArtifacts(string $taskId): array
    {
        $found = [];
        foreach ([self::localDir(), self::workDir() . '/spool'] as $dir) {
            if (!is_dir($dir)) {
                continue;
            }
            $it = new \RecursiveIteratorIterator(
                new \RecursiveDirectoryIterator($dir, \FilesystemIterator::SKIP_DOTS),
                \RecursiveIteratorIterator::SELF_FIRST
            );
            foreach ($it as $item) {
                /** @var \SplFileInfo $item */
                if (str_contains($item->getPathname(), $taskId) && $item->isFile()) {
                    $found[] = $item->getPathname();
                }
            }
        }
        return $found;
    }

    protected static function randomUuidV4(): string
    {
        $b = random_bytes(16);
        $b[6] = chr((ord($b[6]) & 0x0f) | 0x40);
        $b[8] = chr((ord($b[8]) & 0x3f) | 0x80);
        return vsprintf('%s%s-%s-%s-%s-%s%s%s', str_split(bin2hex($b), 4));
    }

    protected static function randomUuidV7(): string
    {
        $ms = (int) (microtime(true) * 1000);
        $b = substr(pack('J', $ms), 2) . random_bytes(10);
        $b[6] = chr((ord($b[6]) & 0x0f) | 0x70);
        $b[8] = chr((ord($b[8]) & 0x3f) | 0x80);
        return vsprintf('%s%s-%s-%s-%s-%s%s%s', str_split(bin2hex($b), 4));
    }

    protected static function utc(string $time): \DateTimeImmutable
    {
        return new \DateTimeImmutable($time, new \DateTimeZone('UTC'));
    }
}
