<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\ExportException;
use Fluxo\Exporter;
use Fluxo\InvalidOptionException;
use Fluxo\Tests\Support\FluxoTestCase;
use Fluxo\Tests\Support\XlsxReader;

/**
 * XLSX exports, read back with an independent reader (openpyxl via tools/xlsx_dump.py).
 */
final class ExporterXlsxTest extends FluxoTestCase
{
    public function testBasicWorkbook(): void
    {
        $e = new Exporter(['format' => 'xlsx', 'columns' => ['id', 'name', 'amount']]);
        $taskId = $e->taskId();
        self::assertMatchesRegularExpression(self::UUID_V7, $taskId);
        self::assertSame(2, $e->addBatch([[1, 'Ann', 10.5], [2, 'Bob', 20]]));
        self::assertSame(3, $e->addRow([3, 'Cid', -1.25]));
        $r = $e->finish();

        $this->assertResult($r, 'xlsx', 3, 'export-' . $taskId . '.xlsx');
        self::assertSame(1, $r->sheets);
        self::assertSame("PK\x03\x04", substr((string) file_get_contents($r->path), 0, 4), 'an xlsx file is a zip');

        $book = $this->readXlsx($r->path);
        self::assertSame(['Sheet1'], $book['sheetnames'], "default sheet name 'Sheet1'");
        $sheet = $book['sheets'][0];
        self::assertSame(
            [['id', 'name', 'amount'], [1, 'Ann', 10.5], [2, 'Bob', 20], [3, 'Cid', -1.25]],
            $sheet['rows']
        );
        self::assertSame(['int', 'str', 'float'], $sheet['types'][1]);
        self::assertSame(['n', 's', 'n'], $sheet['data_types'][1]);
    }

    public function testHeaderIsBoldAndFrozen(): void
    {
        $r = $this->exportOne(['format' => 'xlsx', 'columns' => ['a', 'b', 'c']], [['x', 1, true], ['y', 2, false]]);
        $sheet = $this->readXlsx($r->path)['sheets'][0];
        self::assertSame([true, true, true], $sheet['bold'][0], 'header cells are bold');
        self::assertSame([false, false, false], $sheet['bold'][1], 'data cells are not bold');
        self::assertSame('A2', $sheet['freeze_panes'], 'the header row is frozen');
    }

    public function testCellTypes(): void
    {
        $stringable = new class () {
            public function __toString(): string
            {
                return 'from __toString';
            }
        };
        $columns = ['int', 'float', 'bool', 'null', 'string', 'formula-like', 'leading-zero', 'datetime', 'stringable'];
        $row = [42, 0.1, true, null, 'text', '=1+2', '00123', self::utc('2026-11-29 10:20:30'), $stringable];
        $row2 = [-7, 1e20, false, null, '', '@x', '+1', new \DateTime('2000-01-01 00:00:00', new \DateTimeZone('UTC')), 'x'];
        $r = $this->exportOne(['format' => 'xlsx', 'columns' => $columns], [$row, $row2]);
        $this->assertResult($r, 'xlsx', 2);
        $sheet = $this->readXlsx($r->path)['sheets'][0];

        self::assertSame($columns, $sheet['rows'][0]);
        self::assertSame(
            [42, 0.1, true, null, 'text', '=1+2', '00123', '2026-11-29T10:20:30', 'from __toString'],
            $sheet['rows'][1]
        );
        self::assertSame(
            ['int', 'float', 'bool', 'NoneType', 'str', 'str', 'str', 'datetime', 'str'],
            $sheet['types'][1]
        );
        self::assertSame('n', $sheet['data_types'][1][0], 'int is a number cell');
        self::assertSame('n', $sheet['data_types'][1][1], 'float is a number cell');
        self::assertSame('b', $sheet['data_types'][1][2], 'bool is a boolean cell');
        self::assertSame('s', $sheet['data_types'][1][5], "'=1+2' is a string, not a formula");
        self::assertTrue($sheet['is_date'][1][7], 'DateTimeInterface is a real date cell');
        self::assertSame('yyyy-mm-dd hh:mm:ss', $sheet['number_formats'][1][7], 'auto DateTimeInterface → datetime format');

        $second = $sheet['rows'][2];
        self::assertSame(-7, $second[0]);
        self::assertEqualsWithDelta(1e20, $second[1], 1e5);
        self::assertContains($sheet['types'][2][1], ['int', 'float'], '1e20 is a number');
        self::assertFalse($second[2]);
        self::assertSame('bool', $sheet['types'][2][2]);
        self::assertNull($second[3]);
        // an empty string is either an empty cell or an empty text cell
        self::assertContains($second[4], [null, '']);
        self::assertSame(['@x', '+1'], [$second[5], $second[6]]);
        self::assertSame('2000-01-01T00:00:00', $second[7]);
        self::assertSame('x', $second[8]);
    }

    /**
     * @return iterable<string, array{int, string}>
     */
    public static function longIntProvider(): iterable
    {
        yield 'PHP_INT_MAX' => [PHP_INT_MAX, '9223372036854775807'];
        yield 'PHP_INT_MIN' => [PHP_INT_MIN, '-9223372036854775808'];
        yield '17 digits' => [12345678901234567, '12345678901234567'];
        yield '-17 digits' => [-12345678901234567, '-12345678901234567'];
        yield '2^53 + 1' => [9007199254740993, '9007199254740993'];
        yield '19 digits' => [1234567890123456789, '1234567890123456789'];
    }

    /**
     * @dataProvider longIntProvider
     */
    public function testLongIntsAreTextSoTheyStayExact(int $value, string $text): void
    {
        $r = $this->exportOne(['format' => 'xlsx', 'columns' => ['n', 'small']], [[$value, 123456789012345]]);
        $sheet = $this->readXlsx($r->path)['sheets'][0];
        self::assertSame($text, $sheet['rows'][1][0], 'a long int is written as exact text');
        self::assertSame('str', $sheet['types'][1][0]);
        self::assertSame(123456789012345, $sheet['rows'][1][1], 'a 15-digit int stays a number');
        self::assertSame('int', $sheet['types'][1][1]);
    }

    public function testDateCellsAndDefaultFormats(): void
    {
        $dt = self::utc('2026-11-29 10:20:30');
        $r = $this->exportOne(
            [
                'format' => 'xlsx',
                'columns' => [
                    ['name' => 'd', 'type' => 'date'],
                    ['name' => 'dt', 'type' => 'datetime'],
                    ['name' => 't', 'type' => 'time'],
                    'auto',
                ],
            ],
            [
                [$dt, $dt, $dt, $dt],
                ['2026-11-29', '2026-11-29 10:20:30', '2026-11-29 23:59:58', new \DateTime('2026-01-31 08:00:00', new \DateTimeZone('UTC'))],
                ['2026-11-29T10:00:00+08:00', '2026-11-29T23:30:00+08:00', '2026-11-29T23:30:00+08:00', null],
                [0, 0, 3661, null],
            ]
        );
        $sheet = $this->readXlsx($r->path)['sheets'][0];
        self::assertSame(['d', 'dt', 't', 'auto'], $sheet['rows'][0]);
        self::assertSame(['2026-11-29T00:00:00', '2026-11-29T10:20:30', '10:20:30', '2026-11-29T10:20:30'], $sheet['rows'][1]);
        self::assertSame(['2026-11-29T00:00:00', '2026-11-29T10:20:30', '23:59:58', '2026-01-31T08:00:00'], $sheet['rows'][2]);
        self::assertSame(
            ['2026-11-29T00:00:00', '2026-11-29T23:30:00', '23:30:00', null],
            $sheet['rows'][3],
            'ISO 8601 with offset keeps the wall-clock time as written'
        );
        self::assertSame(['1970-01-01T00:00:00', '1970-01-01T00:00:00', '01:01:01', null], $sheet['rows'][4], 'ints are Unix timestamps (in PHP\'s default zone, UTC here)');
        for ($i = 1; $i <= 4; $i++) {
            self::assertSame(['datetime', 'datetime', 'time'], array_slice($sheet['types'][$i], 0, 3), "row {$i}: real dates");
            self::assertSame('yyyy-mm-dd', $sheet['number_formats'][$i][0], 'date default format');
            self::assertSame('yyyy-mm-dd hh:mm:ss', $sheet['number_formats'][$i][1], 'datetime default format');
            self::assertSame('hh:mm:ss', $sheet['number_formats'][$i][2], 'time default format');
            self::assertSame([true, true, true], array_slice($sheet['is_date'][$i], 0, 3));
        }
        self::assertSame('yyyy-mm-dd hh:mm:ss', $sheet['number_formats'][2][3]);
    }

    /**
     * Excel counts a 1900-02-29 that never was, so its serials of January and
     * February 1900 are a day lower than the days since 1899-12-30; days it
     * has no serial for (before 1900, after 9999) are written as text.
     */
    public function testDatesAroundTheEdgesOfExcelsCalendar(): void
    {
        $r = $this->exportOne(
            ['format' => 'xlsx', 'columns' => [['name' => 'd', 'type' => 'date'], ['name' => 'dt', 'type' => 'datetime']]],
            [
                ['1900-01-01', '1900-01-01 06:00:00'],
                ['1900-02-28', '1900-02-28 23:59:59'],
                ['1900-03-01', '1900-03-01 00:00:00'],
                ['1899-12-31', '1899-12-31 23:59:59'],
                ['1850-06-01', '1850-06-01 12:30:00'],
                ['9999-12-31', 253402300800],
            ]
        );
        $sheet = $this->readXlsx($r->path)['sheets'][0];
        self::assertSame(['1900-01-01T00:00:00', '1900-01-01T06:00:00'], $sheet['rows'][1]);
        self::assertSame(['1900-02-28T00:00:00', '1900-02-28T23:59:59'], $sheet['rows'][2]);
        self::assertSame(['1900-03-01T00:00:00', '1900-03-01T00:00:00'], $sheet['rows'][3]);
        self::assertSame(['1899-12-31', '1899-12-31 23:59:59'], $sheet['rows'][4]);
        self::assertSame(['1850-06-01', '1850-06-01 12:30:00'], $sheet['rows'][5]);
        self::assertSame(['9999-12-31T00:00:00', '10000-01-01 00:00:00'], $sheet['rows'][6]);
        for ($i = 1; $i <= 3; $i++) {
            self::assertSame(['datetime', 'datetime'], $sheet['types'][$i], "row {$i}: real dates");
        }
        self::assertSame(['str', 'str'], $sheet['types'][4]);
        self::assertSame(['str', 'str'], $sheet['types'][5]);
        self::assertSame(['datetime', 'str'], $sheet['types'][6]);
    }

    public function testColumnNumberFormats(): void
    {
        $r = $this->exportOne(
            [
                'format' => 'xlsx',
                'columns' => [
                    ['name' => 'Amount', 'type' => 'number', 'format' => '#,##0.00'],
                    ['name' => 'Day', 'type' => 'date', 'format' => 'dd/mm/yyyy'],
                    ['name' => 'At', 'type' => 'datetime', 'format' => 'yyyy-mm-dd hh:mm'],
                    ['name' => 'Pct', 'format' => '0.0%'],
                    'plain',
                ],
            ],
            [[1234.5, '2026-11-29', '2026-11-29 10:20:30', 0.25, 7]]
        );
        $sheet = $this->readXlsx($r->path)['sheets'][0];
        self::assertSame([1234.5, '2026-11-29T00:00:00', '2026-11-29T10:20:30', 0.25, 7], $sheet['rows'][1]);
        self::assertSame(['#,##0.00', 'dd/mm/yyyy', 'yyyy-mm-dd hh:mm', '0.0%', 'General'], $sheet['number_formats'][1]);
        self::assertSame('float', $sheet['types'][1][0]);
    }

    public function testSheetOptionNamesFirstSheet(): void
    {
        $r = $this->exportOne(['format' => 'xlsx', 'sheet' => 'Orders 2026', 'columns' => ['a']], [['x']]);
        self::assertSame(['Orders 2026'], $this->readXlsx($r->path)['sheetnames']);
    }

    public function testSheetNameOf31CharsIsAccepted(): void
    {
        $name = str_repeat('n', 31);
        $r = $this->exportOne(['format' => 'xlsx', 'sheet' => $name, 'columns' => ['a']], [['x']]);
        self::assertSame([$name], $this->readXlsx($r->path)['sheetnames']);
    }

    public function testMultipleSheets(): void
    {
        $e = new Exporter(['format' => 'xlsx', 'sheet' => 'Orders', 'columns' => ['id', ['name' => 'amount', 'type' => 'number']]]);
        self::assertSame(2, $e->addBatch([[1, 10], [2, '20.5']]));
        $e->sheet('Refunds');
        self::assertSame(3, $e->addBatch([[3, '-5']]), 'the running count spans sheets');
        $e->sheet('Notes', ['note', ['name' => 'when', 'type' => 'date'], 'flag']);
        self::assertSame(5, $e->addBatch([['hello', '2026-11-29', true], ['bye', '2026-11-30', false]]));
        self::assertSame(6, $e->addRow(['last', null, null]));
        $r = $e->finish();

        $this->assertResult($r, 'xlsx', 6);
        self::assertSame(3, $r->sheets);
        $book = $this->readXlsx($r->path);
        self::assertSame(['Orders', 'Refunds', 'Notes'], $book['sheetnames']);
        [$orders, $refunds, $notes] = $book['sheets'];
        self::assertSame([['id', 'amount'], [1, 10], [2, 20.5]], $orders['rows']);
        self::assertSame([['id', 'amount'], [3, -5]], $refunds['rows'], 'header repeated, columns default to the current ones');
        self::assertSame(
            [['note', 'when', 'flag'], ['hello', '2026-11-29T00:00:00', true], ['bye', '2026-11-30T00:00:00', false], ['last', null, null]],
            $notes['rows']
        );
        self::assertSame('yyyy-mm-dd', $notes['number_formats'][1][1]);
        foreach ($book['sheets'] as $sheet) {
            self::assertSame('A2', $sheet['freeze_panes'], $sheet['name'] . ': header frozen');
            self::assertNotContains(false, $sheet['bold'][0], $sheet['name'] . ': header bold');
        }
    }

    public function testSheetWithAssocRowsUsesNewColumnKeys(): void
    {
        $e = new Exporter(['format' => 'xlsx', 'columns' => ['a']]);
        $e->addBatch([['a' => 1, 'b' => 'ignored']]);
        $e->sheet('Second', [['name' => 'B', 'key' => 'b']]);
        $e->addBatch([['a' => 'ignored', 'b' => 2]]);
        $r = $e->finish();
        $book = $this->readXlsx($r->path);
        self::assertSame([['a'], [1]], $book['sheets'][0]['rows']);
        self::assertSame([['B'], [2]], $book['sheets'][1]['rows']);
    }

    /**
     * @return iterable<string, array{string}>
     */
    public static function badSheetNameProvider(): iterable
    {
        yield '32 chars' => [str_repeat('x', 32)];
        foreach (['[', ']', ':', '*', '?', '/', '\\'] as $char) {
            yield "contains {$char}" => ["bad{$char}name"];
        }
    }

    /**
     * @return iterable<string, array{string}>
     */
    public static function takenSheetNameProvider(): iterable
    {
        yield 'the first sheet\'s name again' => ['Sheet1'];
        yield 'the first sheet\'s name in other case' => ['SHEET1'];
    }

    /**
     * sheet() itself refuses a bad name, before any later row is sent.
     *
     * @dataProvider badSheetNameProvider
     * @dataProvider takenSheetNameProvider
     */
    public function testBadSheetNameInSheetCallThrows(string $name): void
    {
        $e = new Exporter(['format' => 'xlsx', 'columns' => ['a']]);
        $e->addRow(['x']);
        try {
            $e->sheet($name);
            self::fail('invalid sheet name accepted: ' . $name);
        } catch (InvalidOptionException $ex) {
            self::assertNotSame('', $ex->getMessage());
        }
        // the export is still usable and has a single sheet
        self::assertSame(2, $e->addRow(['y']));
        $r = $e->finish();
        self::assertSame(1, $r->sheets);
        self::assertSame([['a'], ['x'], ['y']], $this->readXlsx($r->path)['sheets'][0]['rows']);
    }

    /**
     * @dataProvider badSheetNameProvider
     */
    public function testBadSheetNameOptionThrows(string $name): void
    {
        try {
            new Exporter(['format' => 'xlsx', 'sheet' => $name, 'columns' => ['a']]);
            self::fail('invalid sheet option accepted: ' . $name);
        } catch (InvalidOptionException $ex) {
            self::assertStringContainsString('sheet', $ex->getMessage());
        }
    }

    public function testSheetAfterFinishThrowsAlreadyFinished(): void
    {
        $e = new Exporter(['format' => 'xlsx', 'columns' => ['a']]);
        $e->addRow(['x']);
        $e->finish();
        $this->expectException(ExportException::class);
        $this->expectExceptionMessage('already finished');
        $e->sheet('Late');
    }

    public function testFilenameGetsXlsxExtension(): void
    {
        $r = $this->exportOne(['format' => 'xlsx', 'filename' => 'orders-2026-11', 'columns' => ['a']], [['x']]);
        $this->assertResult($r, 'xlsx', 1, 'orders-2026-11.xlsx');
        $r = $this->exportOne(['format' => 'xlsx', 'filename' => 'dir/orders.xlsx', 'columns' => ['a']], [['x']]);
        $this->assertResult($r, 'xlsx', 1, 'orders.xlsx');
        $r = $this->exportOne(['format' => 'xlsx', 'filename' => 'orders.csv', 'columns' => ['a']], [['x']]);
        $this->assertResult($r, 'xlsx', 1, 'orders.csv.xlsx');
    }

    public function testEmptyWorkbookHasOnlyTheHeader(): void
    {
        $e = new Exporter(['format' => 'xlsx', 'columns' => ['a', 'b']]);
        $r = $e->finish();
        $this->assertResult($r, 'xlsx', 0);
        $sheet = $this->readXlsx($r->path)['sheets'][0];
        self::assertSame([['a', 'b']], $sheet['rows']);
    }

    public function testFormatFromIni(): void
    {
        $old = ini_set('fluxo.format', 'xlsx');
        self::assertNotFalse($old);
        try {
            $r = $this->exportOne(['columns' => ['a']], [['x']]);
        } finally {
            ini_set('fluxo.format', (string) $old);
        }
        $this->assertResult($r, 'xlsx', 1);
        self::assertStringEndsWith('.xlsx', $r->filename);
        self::assertSame([['a'], ['x']], $this->readXlsx($r->path)['sheets'][0]['rows']);
    }

    /**
     * @return iterable<string, array{string}>
     */
    public static function compressionProvider(): iterable
    {
        yield 'level 1' => ['1'];
        yield 'level 9' => ['9'];
    }

    /**
     * @dataProvider compressionProvider
     */
    public function testCompressionLevelsProduceValidFiles(string $level): void
    {
        $old = ini_set('fluxo.compression_level', $level);
        self::assertNotFalse($old);
        try {
            $rows = [];
            for ($i = 0; $i < 2000; $i++) {
                $rows[] = [$i, str_repeat('abc', 10) . $i];
            }
            $r = $this->exportOne(['format' => 'xlsx', 'columns' => ['n', 's']], $rows);
        } finally {
            ini_set('fluxo.compression_level', (string) $old);
        }
        $this->assertResult($r, 'xlsx', 2000);
        $sheet = $this->readXlsx($r->path)['sheets'][0];
        self::assertCount(2001, $sheet['rows']);
        self::assertSame([1999, str_repeat('abc', 10) . '1999'], $sheet['rows'][2000]);
    }

    /**
     * @return iterable<string, array{string, int}>
     */
    public static function workersProvider(): iterable
    {
        yield 'one' => ['1', 1];
        yield 'three, more than the cores' => ['3', 3];
    }

    /**
     * @dataProvider workersProvider
     */
    public function testWorkersSetTheDeflateThreadsOfAnExport(string $workers, int $threads): void
    {
        self::assertTrue($this->waitForDeflateThreads(0), 'no deflate thread left from another test');
        $old = ini_set('fluxo.workers', $workers);
        self::assertNotFalse($old);
        try {
            $e = new Exporter(['format' => 'xlsx', 'columns' => ['n']]);
            $e->addBatch([[1], [2]]);
            $running = $this->waitForDeflateThreads($threads);
            $seen = $this->deflateThreads();
            $r = $e->finish();
        } finally {
            ini_set('fluxo.workers', (string) $old);
        }
        self::assertTrue($running, "fluxo.workers = {$workers}: expected {$threads} deflate threads, saw {$seen}");
        $this->assertResult($r, 'xlsx', 2);
        self::assertSame([1], $this->readXlsx($r->path)['sheets'][0]['rows'][1]);
        self::assertTrue($this->waitForDeflateThreads(0), 'the deflate threads end with their export');
    }

    public function testWorkersOutOfRangeIsAnError(): void
    {
        $old = ini_set('fluxo.workers', '65');
        try {
            $this->expectException(ExportException::class);
            $this->expectExceptionMessage('fluxo.workers');
            new Exporter(['format' => 'xlsx', 'columns' => ['n']]);
        } finally {
            ini_set('fluxo.workers', (string) $old);
        }
    }

    /** Threads of this process named by the XLSX writer's deflate pool. */
    private function deflateThreads(): int
    {
        $names = array_map(
            static fn (string $comm): string => trim((string) @file_get_contents($comm)),
            glob('/proc/self/task/*/comm') ?: []
        );
        return count(array_filter($names, static fn (string $n): bool => str_starts_with($n, 'fluxo-deflate-')));
    }

    private function waitForDeflateThreads(int $count): bool
    {
        $deadline = microtime(true) + 10;
        while ($this->deflateThreads() !== $count) {
            if (microtime(true) > $deadline) {
                return false;
            }
            usleep(10_000);
        }
        return true;
    }

    public function testUnicodeAndControlCharsInStrings(): void
    {
        $r = $this->exportOne(
            ['format' => 'xlsx', 'columns' => ['名前', 'text']],
            [['中文', "émoji 😀 ✓"], ['tab', "a\tb"], ['newline', "line1\nline2"], ['xml', '<b>&amp;"\'</b>']]
        );
        $rows = $this->readXlsx($r->path)['sheets'][0]['rows'];
        self::assertSame(
            [['名前', 'text'], ['中文', 'émoji 😀 ✓'], ['tab', "a\tb"], ['newline', "line1\nline2"], ['xml', '<b>&amp;"\'</b>']],
            $rows
        );
    }

    /**
     * 1,048,577 data rows: the first sheet holds 1,048,575 of them (plus the header,
     * Excel's 1,048,576-row limit), the rest continues on "Data (2)" with the header repeated.
     *
     * @group slow
     */
    public function testSheetOverflowContinuesOnNumberedSheet(): void
    {
        $e = new Exporter(['format' => 'xlsx', 'sheet' => 'Data', 'columns' => ['n']]);
        $total = 1048577;
        $n = 0;
        while ($n < $total) {
            $rows = [];
            $end = min($total, $n + 10000);
            for ($i = $n; $i < $end; $i++) {
                $rows[] = [$i];
            }
            $n = $e->addBatch($rows);
            self::assertSame($end, $n);
        }
        // The overflow sheet's name is taken at once, not when the writer
        // gets there (which failed the whole export).
        try {
            $e->sheet('data (2)');
            self::fail('a sheet named after the overflow sheet must be refused');
        } catch (\Fluxo\InvalidOptionException $ex) {
            self::assertStringContainsString('already used', $ex->getMessage());
        }
        $e->sheet('More');
        $e->addRow([1]);
        $r = $e->finish();
        $this->assertResult($r, 'xlsx', $total + 1);
        self::assertSame(3, $r->sheets);

        $summary = XlsxReader::summary($r->path);
        self::assertSame(['Data', 'Data (2)', 'More'], $summary['sheetnames']);
        self::assertSame(1048576, $summary['sheets'][0]['row_count'], 'first sheet full: header + 1,048,575 rows');
        self::assertSame(['n'], $summary['sheets'][0]['first_row']);
        self::assertSame(3, $summary['sheets'][1]['row_count'], 'second sheet: header + 2 rows');
        self::assertSame([['n'], [1048575], [1048576]], $summary['sheets'][1]['rows']);
        unlink($r->path);
    }
}
