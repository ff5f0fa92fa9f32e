<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\ExportException;
use Fluxo\Exporter;
use Fluxo\InvalidOptionException;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * Invalid constructor options → Fluxo\InvalidOptionException naming the key.
 */
final class InvalidOptionTest extends FluxoTestCase
{
    public function testUnknownKeyIsNamedAndValidKeysListed(): void
    {
        try {
            new Exporter(['colums' => ['a']]);
            self::fail('unknown option accepted');
        } catch (InvalidOptionException $ex) {
            $message = $ex->getMessage();
            self::assertStringContainsString('colums', $message, 'names the unknown key');
            foreach (['format', 'filename', 'sheet', 'columns', 'total_rows', 'storage', 'local_dir', 'csv'] as $valid) {
                self::assertStringContainsString($valid, $message, "lists valid key {$valid}");
            }
        }
    }

    public function testUnknownKeyNextToValidOptions(): void
    {
        try {
            new Exporter(['columns' => ['a'], 'format' => 'csv', 'compress' => true]);
            self::fail('unknown option accepted');
        } catch (InvalidOptionException $ex) {
            self::assertStringContainsString('compress', $ex->getMessage());
        }
    }

    /**
     * @return iterable<string, array{array<string, mixed>, string}>
     *         options, text the message must contain (the key at fault)
     */
    public static function badOptionProvider(): iterable
    {
        $cols = ['columns' => ['a']];

        yield 'format is an int' => [$cols + ['format' => 5], 'format'];
        yield 'format unknown' => [$cols + ['format' => 'pdf'], 'format'];
        yield 'format empty' => [$cols + ['format' => ''], 'format'];
        yield 'filename is an array' => [$cols + ['filename' => ['x']], 'filename'];
        yield 'sheet is an int' => [$cols + ['format' => 'xlsx', 'sheet' => 5], 'sheet'];
        yield 'sheet too long' => [$cols + ['format' => 'xlsx', 'sheet' => str_repeat('s', 32)], 'sheet'];
        yield 'sheet with slash' => [$cols + ['format' => 'xlsx', 'sheet' => 'a/b'], 'sheet'];
        yield 'sheet with colon' => [$cols + ['format' => 'xlsx', 'sheet' => 'a:b'], 'sheet'];
        yield 'columns missing' => [['format' => 'csv'], 'columns'];
        yield 'columns is a string' => [['columns' => 'x'], 'columns'];
        yield 'columns empty' => [['columns' => []], 'columns'];
        yield 'columns null' => [['columns' => null], 'columns'];
        yield 'column is an int' => [['columns' => [5]], 'column'];
        yield 'column without name' => [['columns' => [['type' => 'int']]], 'name'];
        yield 'column name not a string' => [['columns' => [['name' => 5]]], 'name'];
        yield 'column name of invalid UTF-8' => [['columns' => ["a\xffb"]], 'invalid UTF-8'];
        yield 'filename of invalid UTF-8' => [$cols + ['filename' => "r\xe9sum\xe9.csv"], 'filename'];
        yield 'column type unknown' => [['columns' => [['name' => 'a', 'type' => 'money']]], 'type'];
        yield 'column key is a float' => [['columns' => [['name' => 'a', 'key' => 1.5]]], 'key'];
        yield 'column format not a string' => [['format' => 'xlsx', 'columns' => [['name' => 'a', 'format' => 5]]], 'format'];
        yield 'total_rows negative' => [$cols + ['total_rows' => -1], 'total_rows'];
        yield 'total_rows is a string' => [$cols + ['total_rows' => 'ten'], 'total_rows'];
        yield 'total_rows is a float' => [$cols + ['total_rows' => 1.5], 'total_rows'];
        yield 'storage oss' => [$cols + ['storage' => 'oss'], 'storage'];
        yield 'storage s3' => [$cols + ['storage' => 's3'], 'storage'];
        yield 'storage unknown' => [$cols + ['storage' => 'ftp'], 'storage'];
        yield 'storage is an int' => [$cols + ['storage' => 1], 'storage'];
        yield 'local_dir is an int' => [$cols + ['local_dir' => 5], 'local_dir'];
        yield 'local_dir is relative' => [$cols + ['local_dir' => 'exports'], 'option "local_dir" must be an absolute path'];
        yield 'csv is a string' => [$cols + ['csv' => 'x'], 'csv'];
        yield 'csv delimiter of 2 chars' => [$cols + ['csv' => ['delimiter' => ';;']], 'delimiter'];
        yield 'csv delimiter empty' => [$cols + ['csv' => ['delimiter' => '']], 'delimiter'];
        yield 'csv delimiter is an int' => [$cols + ['csv' => ['delimiter' => 1]], 'delimiter'];
        yield 'csv enclosure empty' => [$cols + ['csv' => ['enclosure' => '']], 'enclosure'];
        yield 'csv enclosure of 2 chars' => [$cols + ['csv' => ['enclosure' => '""']], 'enclosure'];
        yield 'csv bom is a string' => [$cols + ['csv' => ['bom' => 'yes']], 'bom'];
        yield 'csv header is a string' => [$cols + ['csv' => ['header' => 'no']], 'header'];
        yield 'csv line_ending CR' => [$cols + ['csv' => ['line_ending' => "\r"]], 'line_ending'];
        yield 'csv line_ending text' => [$cols + ['csv' => ['line_ending' => 'LF']], 'line_ending'];
        yield 'csv encoding EBCDIC' => [$cols + ['csv' => ['encoding' => 'EBCDIC']], 'encoding'];
        yield 'csv unencodable' => [$cols + ['csv' => ['unencodable' => 'drop']], 'unencodable'];
        yield 'csv formula_guard' => [$cols + ['csv' => ['formula_guard' => 'yes']], 'formula_guard'];
        yield 'csv unknown key' => [$cols + ['csv' => ['quote' => '"']], 'quote'];
        yield 'csv null is an array' => [$cols + ['csv' => ['null' => []]], 'null'];
        yield 'csv true is an int' => [$cols + ['csv' => ['true' => 1]], 'true'];
        yield 'csv false is an array' => [$cols + ['csv' => ['false' => []]], 'false'];
        // Written into every file as they are: the encoding must hold them, whatever `unencodable` says.
        yield 'csv null GBK cannot hold' => [$cols + ['csv' => ['encoding' => 'gbk', 'null' => '😀', 'unencodable' => 'replace']], "csv.null\": character '😀'"];
        yield 'csv decimal_separator is neither . nor ,' => [$cols + ['csv' => ['decimal_separator' => ';']], 'csv.decimal_separator'];
        yield 'column is an empty array' => [['columns' => [[]]], 'columns[0] needs a "name"'];
        yield 'properties created is a time of day' => [
            $cols + ['format' => 'xlsx', 'properties' => ['created' => '03:04:05']],
            'properties.created',
        ];
        yield 'properties created is no date' => [
            $cols + ['format' => 'xlsx', 'properties' => ['created' => 'yesterday']],
            'properties.created',
        ];
        yield 'csv date_format GBK cannot hold' => [$cols + ['csv' => ['encoding' => 'gbk', 'date_format' => 'Y年m月d日 ✓']], 'csv.date_format'];
    }

    /**
     * @dataProvider badOptionProvider
     * @param array<string, mixed> $options
     */
    public function testBadOptionThrowsNamingTheKey(array $options, string $key): void
    {
        try {
            new Exporter($options);
            self::fail('bad options accepted: ' . json_encode($options));
        } catch (InvalidOptionException $ex) {
            self::assertStringContainsString($key, $ex->getMessage());
            self::assertInstanceOf(ExportException::class, $ex);
        }
    }

    public function testRejectedOptionsLeaveNoTaskBehind(): void
    {
        $before = glob(self::workDir() . '/tasks/*.json') ?: [];
        for ($i = 0; $i < 5; $i++) {
            try {
                new Exporter(['columns' => 'x']);
                self::fail('bad options accepted');
            } catch (InvalidOptionException) {
                // expected
            }
        }
        $after = glob(self::workDir() . '/tasks/*.json') ?: [];
        self::assertSame($before, $after, 'an Exporter that was never constructed has no status file');
    }

    public function testZeroTotalRowsIsValid(): void
    {
        $e = new Exporter(['columns' => ['a'], 'total_rows' => 0]);
        $r = $e->finish();
        $this->assertResult($r, 'csv', 0);
        $s = Exporter::status($r->taskId);
        self::assertNotNull($s);
        self::assertSame(0, $s->totalRows);
        self::assertSame(100, $s->progress);
    }

    public function testUnusableLocalDirFailsAtConstruction(): void
    {
        $file = tempnam(sys_get_temp_dir(), 'fluxo-not-a-dir');
        try {
            $this->expectException(\Fluxo\StorageException::class);
            $this->expectExceptionMessage('cannot create the folder');
            new \Fluxo\Exporter(['columns' => ['a'], 'local_dir' => $file . '/sub']);
        } finally {
            unlink($file);
        }
    }
}
