<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\FluxoTestCase;
use Fluxo\Tests\Support\XlsxReader;

/**
 * Peak memory does not grow with the row count: a separate php process exports
 * 1,000,000 rows x 6 mixed columns in batches of 1,000 and reports its VmHWM
 * (peak resident set size, /proc/self/status).
 *
 * Bound: VmHWM < 120 MB. Budget: PHP CLI + loaded extensions ~ 25-35 MB, the
 * row queue between PHP and the writer (fluxo.buffer_size, 8 MB), one 1,000-row
 * batch (< 1 MB as PHP arrays + arena), writer/zip/hash buffers and worker thread
 * stacks (a few MB each). Anything that keeps rows (or a per-row allocation) would
 * need far more: 1,000,000 rows x 6 cells is ~100 MB of cell text alone.
 *
 * @group slow
 */
final class MemoryTest extends FluxoTestCase
{
    private const ROWS = 1000000;

    private const BATCH = 1000;

    private const VMHWM_LIMIT_KB = 120 * 1024;

    private const SCRIPT = <<<'PHP'
        $format = $argv[1];
        $rowsTotal = (int) $argv[2];
        $batchSize = (int) $argv[3];
        $dates = [];
        for ($d = 0; $d < 16; $d++) {
            $dates[] = (new DateTimeImmutable('2026-01-01 00:00:00', new DateTimeZone('UTC')))
                ->modify("+{$d} days {$d} hours");
        }
        $e = new Fluxo\Exporter([
            'format' => $format,
            'columns' => ['id', 'customer', 'amount', 'paid', 'created', 'note'],
            'total_rows' => $rowsTotal,
        ]);
        $n = 0;
        for ($b = 0; $b < intdiv($rowsTotal, $batchSize); $b++) {
            $rows = [];
            for ($j = 0; $j < $batchSize; $j++) {
                $i = $b * $batchSize + $j;
                $rows[] = [
                    $i,                                  // int
                    'customer-' . $i . '@example.com',   // string
                    $i * 1.25,                           // float
                    ($i & 1) === 0,                      // bool
                    $dates[$i & 15],                     // DateTimeInterface
                    $i % 7 === 0 ? null : 'note ' . $i,  // null or string
                ];
            }
            $n = $e->addBatch($rows);
        }
        $r = $e->finish();
        $status = file_get_contents('/proc/self/status');
        preg_match('/^VmHWM:\s+(\d+)\s+kB/m', $status, $hwm);
        preg_match('/^VmRSS:\s+(\d+)\s+kB/m', $status, $rss);
        echo json_encode([
            'count' => $n,
            'records' => $r->records,
            'path' => $r->path,
            'bytes' => $r->bytes,
            'sha256' => $r->sha256,
            'vmhwm_kb' => (int) $hwm[1],
            'vmrss_kb' => (int) $rss[1],
            'php_peak' => memory_get_peak_usage(true),
        ]), "\n";
        PHP;

    /**
     * @return array<string, mixed>
     */
    private function runExport(string $format): array
    {
        self::assertFileExists('/proc/self/status', 'VmHWM is read from /proc (Linux)');
        $child = ChildPhp::run(self::SCRIPT, [$format, (string) self::ROWS, (string) self::BATCH]);
        self::assertSame(0, $child->exitCode, $child->describe());
        $out = $child->json();
        self::assertSame(self::ROWS, $out['count'], 'addBatch() running total');
        self::assertSame(self::ROWS, $out['records']);
        self::assertFileExists($out['path']);
        clearstatcache();
        self::assertSame(filesize($out['path']), $out['bytes']);
        self::assertSame(hash_file('sha256', $out['path']), $out['sha256']);
        fwrite(STDERR, sprintf(
            "\n[memory] %s: %d rows, file %.1f MB, VmHWM %.1f MB, PHP peak %.1f MB\n",
            $format,
            self::ROWS,
            $out['bytes'] / 1048576,
            $out['vmhwm_kb'] / 1024,
            $out['php_peak'] / 1048576
        ));
        return $out;
    }

    public function testCsvMillionRowsPeakMemory(): void
    {
        $out = $this->runExport('csv');
        try {
            self::assertLessThan(
                self::VMHWM_LIMIT_KB,
                $out['vmhwm_kb'],
                sprintf('VmHWM %.1f MB must stay under 120 MB', $out['vmhwm_kb'] / 1024)
            );

            // the file really holds every row
            $fh = fopen($out['path'], 'rb');
            $lines = 0;
            $first = $last = $second = null;
            while (($line = fgets($fh)) !== false) {
                if ($lines === 1) {
                    $second = $line;
                }
                if ($lines === 0) {
                    $first = $line;
                }
                $last = $line;
                $lines++;
            }
            fclose($fh);
            self::assertSame(self::ROWS + 1, $lines, 'header + 1,000,000 lines');
            self::assertSame("\xEF\xBB\xBFid,customer,amount,paid,created,note\n", $first);
            self::assertSame("0,customer-0@example.com,0,TRUE,2026-01-01 00:00:00,\n", $second);
            $i = self::ROWS - 1;
            $date = (new \DateTimeImmutable('2026-01-01 00:00:00', new \DateTimeZone('UTC')))
                ->modify('+' . ($i & 15) . ' days ' . ($i & 15) . ' hours')->format('Y-m-d H:i:s');
            $amount = rtrim(rtrim(number_format($i * 1.25, 2, '.', ''), '0'), '.');
            $note = $i % 7 === 0 ? '' : 'note ' . $i;
            self::assertSame("{$i},customer-{$i}@example.com,{$amount},FALSE,{$date},{$note}\n", $last);
        } finally {
            @unlink($out['path']);
        }
    }

    public function testXlsxMillionRowsPeakMemory(): void
    {
        $out = $this->runExport('xlsx');
        try {
            self::assertLessThan(
                self::VMHWM_LIMIT_KB,
                $out['vmhwm_kb'],
                sprintf('VmHWM %.1f MB must stay under 120 MB', $out['vmhwm_kb'] / 1024)
            );
            $summary = XlsxReader::summary($out['path']);
            self::assertSame(['Sheet1'], $summary['sheetnames'], '1,000,000 rows fit on one sheet');
            self::assertSame(self::ROWS + 1, $summary['sheets'][0]['row_count'], 'header + 1,000,000 rows');
            self::assertSame(['id', 'customer', 'amount', 'paid', 'created', 'note'], $summary['sheets'][0]['first_row']);
        } finally {
            @unlink($out['path']);
        }
    }
}
