<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Exporter;
use Fluxo\InvalidOptionException;
use Fluxo\InvalidRowException;
use Fluxo\Tests\Support\FluxoTestCase;
use Fluxo\Tests\Support\XlsxReader;

/**
 * Issue #5 features, each read back by an independent reader (openpyxl for
 * XLSX, fgetcsv for CSV).
 */
final class SpreadsheetFeaturesTest extends FluxoTestCase
{
    public function testColumnWidthsHiddenColumnsAndAutofilter(): void
    {
        $r = $this->exportOne(
            [
                'format' => 'xlsx',
                'autofilter' => true,
                'columns' => [
                    ['name' => 'Id', 'width' => 20],
                    ['name' => 'Name', 'width' => 'auto'],
                    ['name' => 'Internal', 'hidden' => true],
                ],
            ],
            [[1, '欧阳娜娜 Li', 'x'], [2, 'Bo', 'y']]
        );
        $sheet = $this->readXlsx($r->path)['sheets'][0];
        self::assertEqualsWithDelta(20.0, $sheet['columns']['A']['width'], 0.8, 'fixed width in characters');
        // '欧阳娜娜 Li': four CJK characters count double (8) + 3 = 11, plus one of padding.
        self::assertEqualsWithDelta(12.0, $sheet['columns']['B']['width'], 0.8, 'auto width from the widest value');
        self::assertTrue($sheet['columns']['C']['hidden']);
        self::assertSame('A1:C3', $sheet['autofilter']);
        self::assertSame('A2', $sheet['freeze_panes'], 'header row frozen');
        self::assertTrue($sheet['bold'][0][0], 'header bold');
    }

    public function testDateColumnsAreWideEnoughToShowTheirDates(): void
    {
        // Excel's default column (8.43 characters) shows a yyyy-mm-dd date as ####.
        $r = $this->exportOne(
            [
                'format' => 'xlsx',
                'columns' => [
                    ['name' => 'At', 'type' => 'datetime'],
                    ['name' => 'Day', 'type' => 'date'],
                    ['name' => 'N', 'type' => 'int'],
                    'Object',
                    ['name' => 'Narrow', 'type' => 'date', 'width' => 5],
                    ['name' => 'Long', 'type' => 'date', 'format' => 'd mmmm yyyy'],
                    ['name' => 'Auto', 'type' => 'date', 'width' => 'auto'],
                    ['name' => 'Id', 'type' => 'int'],
                    ['name' => 'Long id', 'type' => 'int'],
                    ['name' => 'Amount', 'type' => 'number', 'format' => '#,##0.00', 'width' => 'auto'],
                    ['name' => 'Grouped', 'type' => 'int', 'format' => '#,##0'],
                    ['name' => 'BIGINT text', 'type' => 'number'],
                    ['name' => 'Nine digits', 'type' => 'int'],
                ],
            ],
            [
                ['2026-11-29 10:00:00', '2026-11-29', 7, new \DateTimeImmutable('2026-11-29 10:00'), '2026-11-29', '2026-11-29', '2026-11-29', -123456789012, 7, 1234567890.5, 12345678901, '123456789012', 123456789],
                [null, null, 99_999_999, null, null, null, null, 5, 123456789012345678, -0.25, 5, '7', null],
            ]
        );
        $columns = $this->readXlsx($r->path)['sheets'][0]['columns'];
        self::assertEqualsWithDelta(20.0, $columns['A']['width'], 0.8, 'yyyy-mm-dd hh:mm:ss and one of padding');
        self::assertEqualsWithDelta(11.0, $columns['B']['width'], 0.8, 'yyyy-mm-dd');
        self::assertArrayNotHasKey('C', $columns, 'ints of up to eight digits keep the default width');
        self::assertEqualsWithDelta(20.0, $columns['D']['width'], 0.8, 'a DateTimeInterface in an auto column');
        self::assertEqualsWithDelta(5.0, $columns['E']['width'], 0.8, 'a width given wins');
        self::assertEqualsWithDelta(18.0, $columns['F']['width'], 0.8, 'a month name counts nine');
        self::assertEqualsWithDelta(11.0, $columns['G']['width'], 0.8, 'auto: the date as shown, not its serial');
        self::assertEqualsWithDelta(14.0, $columns['H']['width'], 0.8, 'a 12-digit int would show as 1.23E+11');
        self::assertEqualsWithDelta(19.0, $columns['I']['width'], 0.8, 'an 18-digit id, written as text');
        self::assertEqualsWithDelta(17.0, $columns['J']['width'], 0.8, 'auto: 1,234,567,890.50 as the format shows it');
        self::assertEqualsWithDelta(15.0, $columns['K']['width'], 0.8, '12,345,678,901 through its format');
        self::assertEqualsWithDelta(10.0, $columns['M']['width'], 0.8, 'nine digits would show as 1.23E+08');
        self::assertEqualsWithDelta(13.0, $columns['L']['width'], 0.8, 'a BIGINT as PDO gives it: a whole double');
    }

    public function testWorkbookProperties(): void
    {
        $r = $this->exportOne(
            [
                'format' => 'xlsx',
                'columns' => ['a'],
                'properties' => [
                    'title' => 'Orders 2026-11',
                    'author' => '张伟',
                    'company' => 'ACME',
                    'created' => '2026-11-29 10:00:00',
                ],
            ],
            [['x']]
        );
        $props = $this->readXlsx($r->path)['properties'];
        self::assertSame('Orders 2026-11', $props['title']);
        self::assertSame('张伟', $props['creator']);
        self::assertSame('ACME', $props['company']);
        self::assertSame('2026-11-29T10:00:00', $props['created']);

        $r = $this->exportOne(
            ['format' => 'xlsx', 'columns' => ['a'], 'properties' => ['created' => '2026-11-29T10:00:00+08:00']],
            [['x']]
        );
        self::assertSame(
            '2026-11-29T02:00:00',
            $this->readXlsx($r->path)['properties']['created'],
            'the file keeps UTC: an offset given is taken off'
        );
    }

    public function testTimezoneShowsDateObjectsInThatZone(): void
    {
        $utcMidnight = new \DateTimeImmutable('2026-11-29 00:00:00', new \DateTimeZone('UTC'));
        $rows = [[$utcMidnight, '2026-11-29 00:00:00']];
        $columns = [['name' => 'object', 'type' => 'datetime'], ['name' => 'text', 'type' => 'datetime']];
        $r = $this->exportOne(['format' => 'xlsx', 'columns' => $columns, 'timezone' => 'Asia/Shanghai'], $rows);
        self::assertSame(
            ['2026-11-29T08:00:00', '2026-11-29T00:00:00'],
            $this->dataRows($r)[0],
            'date objects move to the zone; wall-clock strings stay as written'
        );
        $this->expectException(InvalidOptionException::class);
        $this->expectExceptionMessage('unknown time zone "Mars/Olympus"');
        new Exporter(['columns' => ['a'], 'timezone' => 'Mars/Olympus']);
    }

    public function testCsvDatePatterns(): void
    {
        $r = $this->exportOne(
            [
                'columns' => [['name' => 'd', 'type' => 'date'], ['name' => 'dt', 'type' => 'datetime']],
                'csv' => ['date_format' => 'd/m/Y', 'datetime_format' => 'Y年n月j日 H:i', 'bom' => false],
            ],
            [['2026-11-29', '2026-01-02 03:04:05']]
        );
        self::assertSame([['29/11/2026', '2026年1月2日 03:04']], $this->dataRows($r));
        $this->expectException(InvalidOptionException::class);
        $this->expectExceptionMessage("unknown date letter 'D'");
        new Exporter(['columns' => ['a'], 'csv' => ['date_format' => 'D, d M Y']]);
    }

    public function testTooLongTextIsAnErrorOrTruncated(): void
    {
        $long = str_repeat('長', 40000);
        $e = new Exporter(['format' => 'xlsx', 'columns' => ['id', 'text']]);
        $e->addBatch([[0, 'before']]);
        try {
            $e->addBatch([[1, 'short'], [2, $long]]);
            self::fail('a 40,000-character cell cannot be written to XLSX');
        } catch (InvalidRowException $x) {
            self::assertStringContainsString('row 1, column "text": 40000 characters of text', $x->getMessage());
        }
        // Refused by addBatch itself: the batch is rejected, the export goes on.
        $e->addBatch([[3, str_repeat('長', 32767)]]);
        $kept = $e->finish();
        self::assertSame([[0, 'before'], [3, str_repeat('長', 32767)]], $this->dataRows($kept));

        $r = $this->exportOne(['format' => 'xlsx', 'columns' => ['id', 'text'], 'long_text' => 'truncate'], [[2, $long]]);
        $text = $this->dataRows($r)[0][1];
        self::assertSame(32767, mb_strlen($text, 'UTF-8'));
    }

    public function testInvalidUtf8IsAnErrorOrReplaced(): void
    {
        $r = $this->exportOne(['columns' => ['a'], 'invalid_utf8' => 'replace', 'csv' => ['bom' => false]], [["ok\xffok"]]);
        self::assertSame([["ok\u{FFFD}ok"]], $this->dataRows($r));
        $e = new Exporter(['columns' => ['a']]);
        $this->expectException(InvalidRowException::class);
        $this->expectExceptionMessage('invalid UTF-8');
        $e->addRow(["ok\xffok"]);
    }

    public function testControlCharactersNeverCorruptTheWorkbook(): void
    {
        $text = "tab\there, bell\x07, nul\x00, esc\x1b";
        $r = $this->exportOne(['format' => 'xlsx', 'columns' => ['a']], [[$text]]);
        $rows = $this->dataRows($r);
        self::assertCount(1, $rows, 'openpyxl opens the file');
        self::assertStringStartsWith("tab\there", $rows[0][0]);
    }

    /**
     * @group slow
     */
    public function testPastExcelsRowLimitTheSheetContinues(): void
    {
        $total = 1_100_000;
        $e = new Exporter(['format' => 'xlsx', 'sheet' => 'Orders', 'columns' => ['n'], 'total_rows' => $total]);
        for ($start = 0; $start < $total; $start += 10_000) {
            $e->addBatch(array_map(static fn (int $n): array => [$n], range($start, $start + 9_999)));
        }
        $r = $e->finish();
        self::assertSame($total, $r->records);
        self::assertSame(2, $r->sheets);
        $summary = XlsxReader::summary($r->path);
        self::assertSame(['Orders', 'Orders (2)'], $summary['sheetnames']);
        [$first, $second] = $summary['sheets'];
        self::assertSame(1_048_576, $first['row_count'], 'first sheet full: header + 1,048,575 rows');
        self::assertSame(1 + $total - 1_048_575, $second['row_count'], 'the rest, under a repeated header');
        self::assertSame(['n'], $second['first_row']);
    }

    public function testGzipCompressedCsv(): void
    {
        $r = $this->exportOne(['filename' => 'orders.csv', 'columns' => ['a'], 'csv' => ['compression' => 'gzip']], [['张伟']]);
        self::assertSame('orders.csv.gz', $r->filename);
        self::assertStringEndsWith('.csv.gz', $r->path);
        self::assertSame(hash_file('sha256', $r->path), $r->sha256, 'the hash is of the stored .gz');
        self::assertSame("\xEF\xBB\xBFa\n张伟\n", gzdecode((string) file_get_contents($r->path)));
    }

    public function testStatusReportsSheetCount(): void
    {
        $e = new Exporter(['format' => 'xlsx', 'columns' => ['a']]);
        $e->addRow([1]);
        $e->sheet('Second');
        $e->addRow([2]);
        $r = $e->finish();
        self::assertSame(2, $r->sheets);
        self::assertSame(2, Exporter::status($r->taskId)?->sheets);
    }
}
