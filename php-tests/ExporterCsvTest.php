<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\ExportException;
use Fluxo\Exporter;
use Fluxo\ExportResult;
use Fluxo\InvalidOptionException;
use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\Env;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * CSV exports: result object, file layout and every `csv` option.
 */
final class ExporterCsvTest extends FluxoTestCase
{
    public function testListRowsAndResultProperties(): void
    {
        $e = new Exporter(['format' => 'csv', 'columns' => ['id', 'name', 'amount']]);
        $taskId = $e->taskId();
        self::assertMatchesRegularExpression(self::UUID_V7, $taskId, 'taskId() is a UUID v7');
        self::assertSame($taskId, $e->taskId(), 'taskId() is stable');

        self::assertSame(2, $e->addBatch([[1, 'Ann', 10.5], [2, 'Bob', 20]]));
        self::assertSame(3, $e->addRow([3, 'Cid', -1.25]));
        self::assertSame(3, $e->addBatch([]), 'an empty batch adds nothing');
        self::assertSame(5, $e->addBatch([[4, 'Dee', 0], [5, 'Eve', 1e3]]));
        $r = $e->finish();

        $this->assertResult($r, 'csv', 5, 'export-' . $taskId . '.csv');
        self::assertSame($taskId, $r->taskId);
        self::assertSame(
            [
                ['id', 'name', 'amount'],
                ['1', 'Ann', '10.5'],
                ['2', 'Bob', '20'],
                ['3', 'Cid', '-1.25'],
                ['4', 'Dee', '0'],
                ['5', 'Eve', '1000'],
            ],
            $this->readCsv($r->path)
        );
    }

    public function testResultPropertiesHaveDeclaredTypes(): void
    {
        $r = $this->exportOne(['columns' => ['a']], [['x']]);
        self::assertIsString($r->taskId);
        self::assertIsString($r->url);
        self::assertIsString($r->path);
        self::assertIsString($r->filename);
        self::assertIsString($r->format);
        self::assertIsInt($r->records);
        self::assertIsInt($r->bytes);
        self::assertIsString($r->sha256);
        self::assertMatchesRegularExpression('/^[0-9a-f]{64}$/', $r->sha256);
        self::assertIsInt($r->durationMs);
        self::assertIsInt($r->sheets);
    }

    public function testEmptyOptionArraysMeanTheDefaults(): void
    {
        // 'csv' => $userOptions with none given, as a caller passes them on.
        $csv = $this->exportOne(['columns' => ['a'], 'csv' => []], [['x']]);
        self::assertSame("\u{FEFF}a\nx\n", (string) file_get_contents((string) $csv->path));
        $xlsx = $this->exportOne(['format' => 'xlsx', 'columns' => ['a'], 'properties' => []], [['x']]);
        $this->assertResult($xlsx, 'xlsx', 1);
    }

    public function testFormatDefaultsToCsv(): void
    {
        self::assertSame('csv', ini_get('fluxo.format'));
        $r = $this->exportOne(['columns' => ['a']], [['x']]);
        $this->assertResult($r, 'csv', 1);
        self::assertStringEndsWith('.csv', $r->filename);
    }

    public function testBomIsWrittenByDefault(): void
    {
        $r = $this->exportOne(['columns' => ['name']], [['x']]);
        self::assertTrue($this->hasBom($r->path), 'UTF-8 BOM EF BB BF first by default');
        self::assertSame("\xEF\xBB\xBFname\nx\n", file_get_contents($r->path));
    }

    public function testBomTrue(): void
    {
        $r = $this->exportOne(['columns' => ['name'], 'csv' => ['bom' => true]], [['x']]);
        self::assertSame("\xEF\xBB\xBFname\nx\n", file_get_contents($r->path));
    }

    public function testBomFalse(): void
    {
        $r = $this->exportOne(['columns' => ['name'], 'csv' => ['bom' => false]], [['x']]);
        self::assertFalse($this->hasBom($r->path));
        self::assertSame("name\nx\n", file_get_contents($r->path));
    }

    public function testHeaderFalseWritesOnlyData(): void
    {
        $r = $this->exportOne(
            ['columns' => ['a', 'b'], 'csv' => ['header' => false, 'bom' => false]],
            [[1, 2], [3, 4]]
        );
        $this->assertResult($r, 'csv', 2);
        self::assertSame("1,2\n3,4\n", file_get_contents($r->path));
        self::assertSame([['1', '2'], ['3', '4']], $this->readCsv($r->path));
    }

    public function testHeaderTrueUsesColumnNames(): void
    {
        $r = $this->exportOne(
            [
                'columns' => ['plain', ['name' => 'Typed', 'type' => 'int'], ['name' => 'Keyed', 'key' => 'k']],
                'csv' => ['header' => true],
            ],
            [['a', 1, 'b']]
        );
        self::assertSame([['plain', 'Typed', 'Keyed'], ['a', '1', 'b']], $this->readCsv($r->path));
    }

    public function testEmptyExportHasOnlyTheHeader(): void
    {
        $e = new Exporter(['columns' => ['a', 'b'], 'csv' => ['bom' => false]]);
        $r = $e->finish();
        $this->assertResult($r, 'csv', 0);
        self::assertSame("a,b\n", file_get_contents($r->path));
    }

    public function testDefaultLineEndingIsLf(): void
    {
        $r = $this->exportOne(['columns' => ['a', 'b'], 'csv' => ['bom' => false]], [['x', 'y'], ['z', 'w']]);
        $raw = (string) file_get_contents($r->path);
        self::assertStringNotContainsString("\r", $raw);
        self::assertSame("a,b\nx,y\nz,w\n", $raw);
    }

    public function testCrLfLineEnding(): void
    {
        $r = $this->exportOne(
            ['columns' => ['a', 'b'], 'csv' => ['bom' => false, 'line_ending' => "\r\n"]],
            [['x', 'y'], ['z', 'w']]
        );
        self::assertSame("a,b\r\nx,y\r\nz,w\r\n", file_get_contents($r->path));
        self::assertSame([['a', 'b'], ['x', 'y'], ['z', 'w']], $this->readCsv($r->path));
    }

    public function testExplicitLfLineEnding(): void
    {
        $r = $this->exportOne(
            ['columns' => ['a'], 'csv' => ['bom' => false, 'line_ending' => "\n"]],
            [['x']]
        );
        self::assertSame("a\nx\n", file_get_contents($r->path));
    }

    public function testQuotesOnlyWhenNeededAndDoublesEnclosure(): void
    {
        $rows = [
            ['plain', 'has,comma', 'say "hi"'],
            ["line\nbreak", "carriage\rreturn", 'crlf' . "\r\n" . 'end'],
            [' spaced ', "it's", ''],
        ];
        $r = $this->exportOne(['columns' => ['a', 'b,c', 'd'], 'csv' => ['bom' => false]], $rows);
        $expected = "a,\"b,c\",d\n"
            . "plain,\"has,comma\",\"say \"\"hi\"\"\"\n"
            . "\"line\nbreak\",\"carriage\rreturn\",\"crlf\r\nend\"\n"
            . " spaced ,it's,\n";
        self::assertSame($expected, file_get_contents($r->path));
        self::assertSame(array_merge([['a', 'b,c', 'd']], $rows), $this->readCsv($r->path));
    }

    public function testCustomDelimiterEnclosureAndLineEnding(): void
    {
        $rows = [['x;y', "it's", 'plain'], ["multi\nline", 'a"b', 'c,d']];
        $r = $this->exportOne(
            [
                'columns' => ['a', 'b', 'c'],
                'csv' => ['delimiter' => ';', 'enclosure' => "'", 'line_ending' => "\r\n", 'bom' => false],
            ],
            $rows
        );
        $expected = "a;b;c\r\n"
            . "'x;y';'it''s';plain\r\n"
            . "'multi\nline';a\"b;c,d\r\n";
        self::assertSame($expected, file_get_contents($r->path));
        self::assertSame(array_merge([['a', 'b', 'c']], $rows), $this->readCsv($r->path, ';', "'"));
    }

    public function testTabDelimiter(): void
    {
        $r = $this->exportOne(
            ['columns' => ['a', 'b'], 'csv' => ['delimiter' => "\t", 'bom' => false]],
            [['x y', "t\tab"]]
        );
        self::assertSame("a\tb\nx y\t\"t\tab\"\n", file_get_contents($r->path));
        self::assertSame([['a', 'b'], ['x y', "t\tab"]], $this->readCsv($r->path, "\t"));
    }

    public function testNullTrueFalseDefaults(): void
    {
        $r = $this->exportOne(['columns' => ['n', 't', 'f', 'e'], 'csv' => ['bom' => false]], [[null, true, false, '']]);
        self::assertSame("n,t,f,e\n,TRUE,FALSE,\n", file_get_contents($r->path));
    }

    public function testNullTrueFalseOptions(): void
    {
        $r = $this->exportOne(
            [
                'columns' => ['n', 't', 'f', ['name' => 'b', 'type' => 'bool']],
                'csv' => ['bom' => false, 'null' => 'NULL', 'true' => 'yes', 'false' => 'no'],
            ],
            [[null, true, false, 'false'], ['x', false, true, 1]]
        );
        self::assertSame("n,t,f,b\nNULL,yes,no,no\nx,no,yes,yes\n", file_get_contents($r->path));
    }

    public function testEncodingUtf8IsAccepted(): void
    {
        $r = $this->exportOne(
            ['columns' => ['名前', 'note'], 'csv' => ['encoding' => 'UTF-8', 'bom' => false]],
            [['中文', 'émoji 😀 ✓']]
        );
        self::assertSame("名前,note\n中文,émoji 😀 ✓\n", file_get_contents($r->path));
    }

    public function testAllCsvOptionsTogether(): void
    {
        $r = $this->exportOne(
            [
                'format' => 'csv',
                'filename' => 'all-options',
                'columns' => ['a', 'b', 'c'],
                'total_rows' => 2,
                'storage' => 'local',
                'local_dir' => self::localDir(),
                'csv' => [
                    'delimiter' => '|',
                    'enclosure' => '"',
                    'bom' => true,
                    'header' => true,
                    'line_ending' => "\r\n",
                    'encoding' => 'UTF-8',
                    'null' => '\\N',
                    'true' => '1',
                    'false' => '0',
                ],
            ],
            [[null, true, 'x|y'], [false, 'z', 3]]
        );
        $this->assertResult($r, 'csv', 2, 'all-options.csv');
        self::assertSame("\xEF\xBB\xBFa|b|c\r\n\\N|1|\"x|y\"\r\n0|z|3\r\n", file_get_contents($r->path));
        $status = Exporter::status($r->taskId);
        self::assertNotNull($status);
        self::assertSame(2, $status->totalRows);
        self::assertSame(100, $status->progress);
    }

    public function testManyBatchesKeepOrder(): void
    {
        $e = new Exporter(['columns' => ['n', 's']]);
        $n = 0;
        for ($b = 0; $b < 10; $b++) {
            $rows = [];
            for ($i = 0; $i < 1000; $i++) {
                $rows[] = [$n + $i, 'row ' . ($n + $i)];
            }
            $n += 1000;
            self::assertSame($n, $e->addBatch($rows));
        }
        for ($i = 0; $i < 5; $i++) {
            self::assertSame(++$n, $e->addRow([$n - 1, 'row ' . ($n - 1)]));
        }
        $r = $e->finish();
        $this->assertResult($r, 'csv', 10005);
        $rows = $this->readCsv($r->path);
        self::assertCount(10006, $rows);
        array_shift($rows);
        foreach ($rows as $i => $row) {
            if ($row !== [(string) $i, 'row ' . $i]) {
                self::fail("row {$i} is out of order or wrong: " . json_encode($row));
            }
        }
        self::assertSame(['10004', 'row 10004'], end($rows));
    }

    /**
     * @return iterable<string, array{string, string}>
     */
    public static function filenameProvider(): iterable
    {
        yield 'extension appended' => ['report', 'report.csv'];
        yield 'extension kept' => ['data.csv', 'data.csv'];
        yield 'unix directories stripped' => ['a/b/../report.csv', 'report.csv'];
        yield 'absolute path stripped' => ['/etc/passwd', 'passwd.csv'];
        yield 'windows directories stripped' => ['C:\\Users\\x\\sales.csv', 'sales.csv'];
        yield 'leading dots removed' => ['.hidden', 'hidden.csv'];
        yield 'dot-dot only' => ['..', 'export-{task}.csv'];
        yield 'traversal with dots' => ['../../..', 'export-{task}.csv'];
        yield 'nul and control chars removed' => ["bad\0na\x01me\n.csv", 'badname.csv'];
        yield 'empty' => ['', 'export-{task}.csv'];
        yield 'only dots' => ['...', 'export-{task}.csv'];
        yield 'unicode kept' => ['销售 2026', '销售 2026.csv'];
        yield 'other extension gets csv appended' => ['report.xlsx', 'report.xlsx.csv'];
        yield 'trailing dots and spaces removed' => ['report. ', 'report.csv'];
        yield 'right-to-left override removed' => ["invoice\u{202E}fdp.csv", 'invoicefdp.csv'];
        yield 'nothing but an extension' => ['  .csv', 'export-{task}.csv'];
    }

    /**
     * A name with nothing left once sanitized gets the default name, as an
     * export without one does: `export-{task}.csv`.
     *
     * @dataProvider filenameProvider
     */
    public function testFilenameIsSanitized(string $given, string $expected): void
    {
        $r = $this->exportOne(['columns' => ['a'], 'filename' => $given], [['x']]);
        $expected = str_replace('{task}', $r->taskId, $expected);
        $this->assertResult($r, 'csv', 1, $expected);
        self::assertSame($expected, basename($r->path));
    }

    public function testLocalDirOptionOverridesIni(): void
    {
        $dir = Env::$root . '/per-export-dir';
        $r = $this->exportOne(['columns' => ['a'], 'local_dir' => $dir], [['x']]);
        $this->assertResult($r, 'csv', 1, null, $dir);
        self::assertStringStartsWith($dir . '/', $r->path);
    }

    public function testAnEmptyLocalDirOptionMeansTheIniFolder(): void
    {
        $r = $this->exportOne(['columns' => ['a'], 'local_dir' => ''], [['x']]);
        self::assertStringStartsWith(self::localDir() . '/', $r->path, 'not the working directory');
        self::assertStringStartsWith('file://' . self::localDir() . '/', $r->url);
    }

    public function testOneScriptFeedingMoreExportsThanSlotsFinishesThemAll(): void
    {
        // Three exports fed in turn with one slot on the host: the second and
        // third must not wait for a slot only this script could free.
        $child = ChildPhp::run(<<<'PHP'
            $exports = [];
            for ($n = 0; $n < 3; $n++) {
                $exports[] = new Fluxo\Exporter(['columns' => ['n']]);
            }
            for ($round = 0; $round < 40; $round++) {
                foreach ($exports as $e) {
                    $e->addBatch(array_map(static fn (int $i): array => [$i], range(1, 1000)));
                }
            }
            echo json_encode(array_map(static fn ($e): int => $e->finish()->records, $exports)), "\n";
            PHP, [], ['fluxo.max_concurrent_tasks' => '1', 'fluxo.queue_timeout' => '20', 'fluxo.buffer_size' => '65536']);
        self::assertSame(0, $child->exitCode, $child->describe());
        self::assertSame([40000, 40000, 40000], $child->json());
    }

    public function testStorageLocalIsAccepted(): void
    {
        $r = $this->exportOne(['columns' => ['a'], 'storage' => 'local'], [['x']]);
        $this->assertResult($r, 'csv', 1);
    }

    public function testKeyPrefixIniGoesBeforeTheDate(): void
    {
        $old = ini_set('fluxo.key_prefix', 'tenant-7/exports');
        self::assertNotFalse($old, 'fluxo.key_prefix is an ini entry settable with ini_set');
        try {
            $r = $this->exportOne(['columns' => ['a']], [['x']]);
        } finally {
            ini_set('fluxo.key_prefix', (string) $old);
        }
        self::assertMatchesRegularExpression(
            '#^' . preg_quote(self::localDir(), '#') . '/tenant-7/exports/\d{4}/\d{2}/\d{2}/'
            . preg_quote($r->taskId, '#') . '/' . preg_quote($r->filename, '#') . '$#',
            $r->path
        );
        self::assertFileExists($r->path);
        self::assertSame('file://' . $r->path, $r->url);
    }

    public function testStatusAfterFinish(): void
    {
        $e = new Exporter(['columns' => ['a'], 'total_rows' => 3]);
        $e->addBatch([['x'], ['y'], ['z']]);
        $r = $e->finish();
        $s = Exporter::status($r->taskId);
        self::assertInstanceOf(\Fluxo\TaskStatus::class, $s);
        self::assertSame($r->taskId, $s->taskId);
        self::assertSame('COMPLETED', $s->state);
        self::assertSame(100, $s->progress);
        self::assertSame(3, $s->records);
        self::assertSame(3, $s->totalRows);
        self::assertSame($r->url, $s->url);
        self::assertSame($r->path, $s->path);
        self::assertNull($s->error);
        self::assertSame($r->bytes, $s->bytes);
        self::assertFileExists(self::workDir() . '/tasks/' . $r->taskId . '.json', 'status file {work_dir}/tasks/{id}.json');
        self::assertIsArray(json_decode((string) file_get_contents(self::workDir() . '/tasks/' . $r->taskId . '.json'), true));
    }

    public function testFinishAfterFinishAsyncWaitsForTheFile(): void
    {
        $e = new Exporter(['columns' => ['a']]);
        $e->addBatch(array_map(static fn (int $i): array => [$i], range(1, 50000)));
        $id = $e->finishAsync();
        $r = $e->finish();
        self::assertSame($id, $r->taskId);
        self::assertSame(50000, $r->records);
        self::assertSame(hash_file('sha256', $r->path), $r->sha256);
        self::assertSame('COMPLETED', Exporter::status($id)?->state);
        $this->expectException(ExportException::class);
        $this->expectExceptionMessage('already finished');
        $e->finish();
    }

    public function testFinishTwiceThrowsAlreadyFinished(): void
    {
        $e = new Exporter(['columns' => ['a']]);
        $e->addRow(['x']);
        $r = $e->finish();
        self::assertInstanceOf(ExportResult::class, $r);
        $this->expectException(ExportException::class);
        $this->expectExceptionMessage('already finished');
        $e->finish();
    }

    /**
     * @return iterable<string, array{\Closure(Exporter): mixed}>
     */
    public static function afterFinishProvider(): iterable
    {
        yield 'finishAsync' => [static fn (Exporter $e) => $e->finishAsync()];
        yield 'addBatch' => [static fn (Exporter $e) => $e->addBatch([['y']])];
        yield 'addRow' => [static fn (Exporter $e) => $e->addRow(['y'])];
    }

    /**
     * @dataProvider afterFinishProvider
     * @param \Closure(Exporter): mixed $call
     */
    public function testCallsAfterFinishThrow(\Closure $call): void
    {
        $e = new Exporter(['columns' => ['a']]);
        $e->addRow(['x']);
        $r = $e->finish();
        try {
            $call($e);
            self::fail('expected ExportException after finish()');
        } catch (ExportException $ex) {
            self::assertStringContainsString('already finished', $ex->getMessage());
        }
        // the finished file is untouched
        self::assertSame(hash_file('sha256', $r->path), $r->sha256);
        self::assertSame([['a'], ['x']], $this->readCsv($r->path));
    }

    /**
     * @dataProvider afterFinishProvider
     * @param \Closure(Exporter): mixed $call
     */
    public function testCallsAfterFinishAsyncThrow(\Closure $call): void
    {
        $e = new Exporter(['columns' => ['a']]);
        $e->addRow(['x']);
        $id = $e->finishAsync();
        try {
            $call($e);
            self::fail('expected ExportException after finishAsync()');
        } catch (ExportException $ex) {
            self::assertStringContainsString('already finished: finishAsync() was called', $ex->getMessage());
        }
        $s = $this->waitForState($id);
        self::assertNotNull($s);
        self::assertSame('COMPLETED', $s->state);
        self::assertSame(1, $s->records);
    }

    public function testSheetOnCsvThrowsInvalidOption(): void
    {
        $e = new Exporter(['format' => 'csv', 'columns' => ['a']]);
        $e->addRow(['x']);
        try {
            $e->sheet('Second');
            self::fail('sheet() on a csv export must throw');
        } catch (InvalidOptionException $ex) {
            self::assertNotSame('', $ex->getMessage());
        }
        // still usable
        self::assertSame(2, $e->addRow(['y']));
        $r = $e->finish();
        $this->assertResult($r, 'csv', 2);
        self::assertSame([['a'], ['x'], ['y']], $this->readCsv($r->path));
    }

    public function testUnwritableLocalDirFailsWithExportException(): void
    {
        $file = Env::scratchDir() . '/not-a-directory';
        file_put_contents($file, 'x');
        $stage = 'construct';
        $e = null;
        try {
            $e = new Exporter(['columns' => ['a'], 'local_dir' => $file . '/sub']);
            $stage = 'addBatch';
            $e->addBatch([['x']]);
            $stage = 'finish';
            $e->finish();
            self::fail('an export into a path below a regular file cannot succeed');
        } catch (ExportException $ex) {
            self::assertNotSame('', $ex->getMessage());
            if ($stage === 'finish') {
                $s = Exporter::status($e->taskId());
                self::assertNotNull($s);
                self::assertSame('FAILED', $s->state);
                self::assertNotNull($s->error);
                self::assertNotSame('', $s->error);
            }
        }
    }

    public function testUtf16LeIsTabSeparatedAsExcelReadsIt(): void
    {
        $r = $this->exportOne(
            ['columns' => ['名前', 'note'], 'csv' => ['encoding' => 'UTF-16LE']],
            [['山田', 'a,b']]
        );
        $bytes = (string) file_get_contents($r->path);
        self::assertStringStartsWith("\xFF\xFE", $bytes, 'its BOM');
        self::assertSame("名前\tnote\n山田\ta,b\n", iconv('UTF-16LE', 'UTF-8', substr($bytes, 2)));

        $r = $this->exportOne(
            ['columns' => ['a', 'b'], 'csv' => ['encoding' => 'UTF-16LE', 'delimiter' => ';']],
            [['x', 'y']]
        );
        $text = iconv('UTF-16LE', 'UTF-8', substr((string) file_get_contents($r->path), 2));
        self::assertSame("a;b\nx;y\n", $text, 'a delimiter given is kept');
    }

    public function testAFileBeginningWithIdIsNotTakenForSylk(): void
    {
        foreach ([['bom' => false], ['encoding' => 'GBK']] as $csv) {
            $r = $this->exportOne(['columns' => ['ID', 'name'], 'csv' => $csv], [[1, 'a']]);
            self::assertSame("\"ID\",name\n1,a\n", file_get_contents($r->path), json_encode($csv));
        }
        $r = $this->exportOne(['columns' => ['ID', 'name']], [[1, 'a']]);
        self::assertSame("\xEF\xBB\xBFID,name\n1,a\n", file_get_contents($r->path), 'after a BOM: as it is');

        // Without a header the first row begins the file; only its first cell is quoted.
        $r = $this->exportOne(
            ['columns' => ['code', 'name'], 'csv' => ['header' => false, 'encoding' => 'GBK']],
            [['ID-7 号', 'ID'], ['ID-8', 'b']]
        );
        self::assertSame(
            "\"ID-7 号\",ID\nID-8,b\n",
            iconv('GBK', 'UTF-8', (string) file_get_contents($r->path)),
            'a first cell starting with ID, without a header'
        );
        $r = $this->exportOne(['columns' => ['code'], 'csv' => ['header' => false]], [['ID-7']]);
        self::assertSame("\xEF\xBB\xBFID-7\n", file_get_contents($r->path), 'without a header, after a BOM');
    }

    public function testGbkRefusesWhatGbkReadersCannotRead(): void
    {
        // 䶮 (U+4DAE, in names) has a two-byte code in GB18030 only: iconv's GBK,
        // Windows code page 936 and Python's gbk do not know it.
        $r = $this->exportOne(
            ['columns' => ['name'], 'csv' => ['encoding' => 'GBK', 'unencodable' => 'replace']],
            [['刘䶮'], ['⿰木木']]
        );
        $text = iconv('CP936', 'UTF-8', (string) file_get_contents($r->path));
        self::assertSame("name\n刘?\n?木木\n", $text);
        $e = new Exporter(['columns' => ['name'], 'csv' => ['encoding' => 'GBK']]);
        try {
            $e->addBatch([['刘䶮']]);
            self::fail('GBK cannot hold 䶮 as GBK readers read it');
        } catch (\Fluxo\InvalidRowException $ex) {
            self::assertStringContainsString('U+4DAE', $ex->getMessage());
        }
        $e->cancel();
        $r = $this->exportOne(['columns' => ['name'], 'csv' => ['encoding' => 'GB18030']], [['刘䶮']]);
        self::assertSame("name\n刘䶮\n", iconv('GB18030', 'UTF-8', (string) file_get_contents($r->path)));
    }

    public function testGbkOpensInChineseExcelAndUnencodableIsNamed(): void
    {
        $r = $this->exportOne(
            ['columns' => ['姓名', 'note'], 'csv' => ['encoding' => 'GBK']],
            [['张伟', '欧阳娜娜'], ['王芳', 'x']]
        );
        $bytes = (string) file_get_contents($r->path);
        self::assertStringStartsNotWith("\xEF\xBB\xBF", $bytes, 'GBK files carry no UTF-8 BOM');
        self::assertSame("姓名,note\n张伟,欧阳娜娜\n王芳,x\n", iconv('GBK', 'UTF-8', $bytes));

        // Refused by addBatch itself: the batch is rejected, the export goes on.
        $e = new \Fluxo\Exporter(['columns' => ['a'], 'csv' => ['encoding' => 'GBK', 'bom' => false]]);
        $e->addBatch([['first']]);
        try {
            $e->addBatch([['fine'], ['smile 😀']]);
            self::fail('an emoji cannot be written in GBK');
        } catch (\Fluxo\InvalidRowException $x) {
            self::assertStringContainsString('row 1, column "a": character \'😀\' (U+1F600) cannot be written in GBK', $x->getMessage());
        }
        $e->addBatch([['last']]);
        $r = $e->finish();
        self::assertSame(2, $r->records);
        self::assertSame("a\nfirst\nlast\n", file_get_contents($r->path));

        // A header is written before any row: refused by the constructor.
        try {
            new Exporter(['columns' => ['id', '😀'], 'csv' => ['encoding' => 'GBK']]);
            self::fail('a header GBK cannot hold was accepted');
        } catch (InvalidOptionException $x) {
            self::assertStringContainsString('columns[1] "😀": character \'😀\' (U+1F600) cannot be written in GBK', $x->getMessage());
        }
    }

    public function testExcelTextKeepsIdsAndLeadingZerosAsText(): void
    {
        $columns = [
            ['name' => 'id', 'type' => 'string'],
            ['name' => 'zip', 'type' => 'string'],
            ['name' => 'n', 'type' => 'int'],
            ['name' => 'code', 'type' => 'string'],
            'amount',
        ];
        $rows = [[123456789012345678, '00123', 7, 'x1', '1214.50'], ['987654321098765432', ' 00042', 8, '2024-01-02', '-0.25']];
        $r = $this->exportOne(['columns' => $columns, 'csv' => ['excel_text' => true]], $rows);
        self::assertSame(
            [
                ['="123456789012345678"', '="00123"', '7', '="x1"', '1214.50'],
                ['="987654321098765432"', '=" 00042"', '8', '="2024-01-02"', '-0.25'],
            ],
            $this->dataRows($r),
            'string columns: text with a digit is wrapped; numbers and auto columns are not'
        );
        $plain = $this->exportOne(['columns' => $columns], $rows);
        self::assertSame(['123456789012345678', '00123', '7', 'x1', '1214.50'], $this->dataRows($plain)[0], 'off by default');
    }

    public function testFormulaInjectionIsNeutralisedByDefault(): void
    {
        $rows = [['=cmd|\' /C calc\'!A0', '+1+cmd|x', '-2-3', '@SUM(A1)', 42]];
        $r = $this->exportOne(['columns' => ['a', 'b', 'c', 'd', 'n']], $rows);
        $data = $this->dataRows($r);
        self::assertSame(["'=cmd|' /C calc'!A0", "'+1+cmd|x", "'-2-3", "'@SUM(A1)", '42'], $data[0]);

        $raw = $this->exportOne(['columns' => ['a', 'b', 'c', 'd', 'n'], 'csv' => ['formula_guard' => false]], $rows);
        self::assertSame(["=cmd|' /C calc'!A0", '+1+cmd|x', '-2-3', '@SUM(A1)', '42'], $this->dataRows($raw)[0]);

        // A plain signed number is read as a number, not run: it keeps its value.
        $numbers = [['-12.50', '+1', '-7', '-.5', '-1e5', '- 2']];
        $plain = $this->exportOne(['columns' => ['a', 'b', 'c', 'd', 'e', 'f']], $numbers);
        self::assertSame(['-12.50', '+1', '-7', "'-.5", "'-1e5", "'- 2"], $this->dataRows($plain)[0]);
    }
}
