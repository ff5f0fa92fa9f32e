<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\ExportResult;
use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\Env;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * A real spreadsheet application opens the files: LibreOffice Calc, headless,
 * saves each export as CSV "as shown" (formatted text, as a user sees it).
 */
final class LibreOfficeTest extends FluxoTestCase
{
    /** As Calc's CSV dialog opens a UTF-8 file: comma, double quote, English, special numbers detected. */
    private const CSV_FILTER = 'Text - txt - csv (StarCalc):44,34,76,1,,1033,false,true';

    public function testCsvIdsOpenAsTextWithExcelText(): void
    {
        $columns = [['name' => 'id', 'type' => 'string'], ['name' => 'zip', 'type' => 'string'], ['name' => 'n', 'type' => 'int']];
        $rows = [[123456789012345678, '00123', 5], ['-1.50', '1e5', 6]];
        $plain = $this->shown($this->exportOne(['columns' => $columns], $rows), self::CSV_FILTER);
        self::assertSame(['1.23456789012346E+017', '123', '5'], $plain[1], 'what the option is for');

        $guarded = $this->exportOne(['columns' => $columns, 'csv' => ['excel_text' => true]], $rows);
        $shown = $this->shown($guarded, self::CSV_FILTER);
        self::assertSame([['id', 'zip', 'n'], ['123456789012345678', '00123', '5'], ['-1.50', '1e5', '6']], $shown);
    }

    public function testXlsxShowsWhatWasExported(): void
    {
        $r = $this->exportOne(
            [
                'format' => 'xlsx',
                'columns' => [
                    ['name' => 'Order ID', 'type' => 'string'],
                    ['name' => 'Big int', 'type' => 'int'],
                    ['name' => 'Amount', 'type' => 'number', 'format' => '#,##0.00'],
                    ['name' => 'Day', 'type' => 'date'],
                    ['name' => 'At', 'type' => 'datetime'],
                    ['name' => 'Paid', 'type' => 'bool'],
                    ['name' => 'Customer'],
                ],
            ],
            [
                ['000123456789012345678', 123456789012345678, 1234.5, '2026-11-29', '2026-11-29 10:20:30', true, '欧阳娜娜 😀'],
                ['=1+1', -42, -0.25, '1900-03-01', '1999-12-31 23:59:59', false, null],
            ]
        );
        $shown = $this->shown($r, null);
        self::assertSame(['Order ID', 'Big int', 'Amount', 'Day', 'At', 'Paid', 'Customer'], $shown[0]);
        self::assertSame(
            ['000123456789012345678', '123456789012345678', '1,234.50', '2026-11-29', '2026-11-29 10:20:30', 'TRUE', '欧阳娜娜 😀'],
            $shown[1]
        );
        self::assertSame(['=1+1', '-42', '-0.25', '1900-03-01', '1999-12-31 23:59:59', 'FALSE', ''], $shown[2]);
    }

    public function testADecimalCommaIsReadAsNumbersInAGermanLocale(): void
    {
        $german = 'Text - txt - csv (StarCalc):59,34,76,1,,1031,false,true';
        $rows = [[1.5, '-1234.25', 7]]; // the second as PDO gives a DECIMAL
        foreach (['.' => 'str', ',' => 'float'] as $separator => $type) {
            $r = $this->exportOne(
                ['columns' => ['a', 'b', 'c'], 'csv' => ['delimiter' => ';', 'decimal_separator' => $separator]],
                $rows
            );
            $sheet = $this->readXlsx($this->converted($r, $german, 'xlsx'))['sheets'][0];
            self::assertSame([$type, $type, 'int'], $sheet['types'][1], "decimal_separator {$separator}");
        }
    }

    /**
     * The file opened in Calc (with `$inFilter`, for CSV) and saved as UTF-8
     * CSV of the cells as shown, read back with fgetcsv().
     *
     * @return list<list<string|null>>
     */
    private function shown(ExportResult $result, ?string $inFilter): array
    {
        // Out: comma, quote, UTF-8, from row 1, cells as shown (token 9).
        $csv = 'csv:Text - txt - csv (StarCalc):44,34,76,1,,1033,false,true,true';
        return $this->readCsv($this->converted($result, $inFilter, $csv));
    }

    /** The file opened in Calc (with `$inFilter`, for CSV) and saved by `soffice --convert-to $to`. */
    private function converted(ExportResult $result, ?string $inFilter, string $to): string
    {
        if ((string) shell_exec('command -v soffice') === '') {
            self::markTestSkipped('LibreOffice (soffice) is not installed: scripts/install-deps.sh installs it');
        }
        $dir = Env::$root . '/libreoffice-' . bin2hex(random_bytes(4));
        mkdir($dir . '/in', 0777, true);
        $extension = pathinfo((string) $result->path, PATHINFO_EXTENSION);
        copy((string) $result->path, $dir . '/in/file.' . $extension);
        $command = ['soffice', '-env:UserInstallation=file://' . $dir . '/profile', '--headless'];
        if ($inFilter !== null) {
            $command[] = '--infilter=' . $inFilter;
        }
        array_push($command, '--convert-to', $to, '--outdir', $dir . '/out', $dir . '/in/file.' . $extension);
        $run = ChildPhp::runCommand($command);
        self::assertSame(0, $run->exitCode, $run->describe());
        $out = $dir . '/out/file.' . explode(':', $to)[0];
        self::assertFileExists($out, $run->describe());
        return $out;
    }
}
