<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * How each PHP value and each column type is written, in CSV (read back with
 * fgetcsv) and XLSX (read back with openpyxl).
 */
final class ValuesTest extends FluxoTestCase
{
    /**
     * @return iterable<string, array{mixed, string}>
     */
    public static function csvAutoProvider(): iterable
    {
        yield 'zero' => [0, '0'];
        yield 'negative int' => [-42, '-42'];
        yield 'PHP_INT_MAX' => [PHP_INT_MAX, '9223372036854775807'];
        yield 'PHP_INT_MIN' => [PHP_INT_MIN, '-9223372036854775808'];
        yield '1e20 without exponent' => [1e20, '100000000000000000000'];
        yield '0.1' => [0.1, '0.1'];
        yield '3.0' => [3.0, '3'];
        yield '-0.5' => [-0.5, '-0.5'];
        yield '0.1 + 0.2 shortest round trip' => [0.1 + 0.2, '0.30000000000000004'];
        yield '1.5e-7 without exponent' => [1.5e-7, '0.00000015'];
        yield '1e-10 without exponent' => [1e-10, '0.0000000001'];
        yield '123456.789' => [123456.789, '123456.789'];
        yield '1e15' => [1e15, '1000000000000000'];
        yield '2.5e300 without exponent' => [2.5e300, '25' . str_repeat('0', 299)];
        yield 'float max int' => [9007199254740992.0, '9007199254740992'];
        yield 'true' => [true, 'TRUE'];
        yield 'false' => [false, 'FALSE'];
        yield 'null' => [null, ''];
        yield 'empty string' => ['', ''];
        yield 'numeric string kept as text' => ['00123', '00123'];
        yield 'long digit string exact' => ['12345678901234567890', '12345678901234567890'];
        yield 'unicode' => ['中文 ✓ émoji 😀', '中文 ✓ émoji 😀'];
        yield 'DateTimeImmutable → datetime' => [self::utc('2026-11-29 10:20:30'), '2026-11-29 10:20:30'];
        yield 'DateTime → datetime' => [new \DateTime('2026-01-02 03:04:05', new \DateTimeZone('UTC')), '2026-01-02 03:04:05'];
    }

    /**
     * @dataProvider csvAutoProvider
     */
    public function testCsvAutoColumn(mixed $value, string $expected): void
    {
        $r = $this->exportOne(['columns' => ['v', 'marker'], 'csv' => ['bom' => false]], [[$value, 'm']]);
        self::assertSame([['v', 'marker'], [$expected, 'm']], $this->readCsv($r->path));
    }

    /**
     * Within 1e-4..1e15, a fraction is written with the digits PHP's own
     * var_export() uses (the shortest that read back exactly, a tie rounded to
     * even; below 1e-4 PHP switches to an exponent, which CSV never uses), for
     * 20,000 random floats and the ties Rust's own formatting rounds up.
     */
    public function testCsvFloatsHaveThePhpDigits(): void
    {
        mt_srand(20261129);
        $values = [74139668933.390625, 13359451523370.3125, 27672855459971.9375, 0.1 + 0.2, 1e-4 + 1e-17];
        for ($i = 0; $i < 20000; $i++) {
            $magnitude = 10 ** mt_rand(-4, 14);
            $f = mt_rand() / mt_getrandmax() * $magnitude;
            if ($f >= 1e-4 && $f < 1e15 && fmod($f, 1.0) !== 0.0) {
                $values[] = $i % 2 === 0 ? $f : -$f;
            }
        }
        $r = $this->exportOne(['columns' => ['f'], 'csv' => ['bom' => false, 'header' => false]], array_map(static fn (float $f): array => [$f], $values));
        $written = array_column($this->readCsv($r->path), 0);
        self::assertCount(count($values), $written);
        foreach ($values as $i => $f) {
            self::assertSame(var_export($f, true), $written[$i], "float {$i}");
        }
    }

    /**
     * A row held through a PHP reference, replaced by a __toString() that runs
     * while the row is read: the row is read as it was passed (its memory is
     * not freed under the reader; `make valgrind` checks that part).
     */
    public function testARowReplacedThroughAReferenceWhileItIsReadKeepsItsValues(): void
    {
        $row = [];
        $replacer = new class ($row) {
            private mixed $target;

            public function __construct(mixed &$target)
            {
                $this->target = &$target;
            }

            public function __toString(): string
            {
                $this->target = ['changed', 'changed', str_repeat('z', 100)];
                return 'object';
            }
        };
        $last = 'last-' . str_repeat('y', 100);
        $row = ['first', $replacer, $last];
        $rows = [&$row, ['2', '3', '4']];
        $r = $this->exportOne(['columns' => ['a', 'b', 'c'], 'csv' => ['bom' => false]], $rows);
        self::assertSame([['a', 'b', 'c'], ['first', 'object', $last], ['2', '3', '4']], $this->readCsv($r->path));
        self::assertSame('changed', $row[0], 'the callback did replace the row');
    }

    /**
     * A method of a cell's object that throws rejects the whole batch: the
     * caller gets that exception, no row of the batch is written, and the
     * export goes on.
     */
    public function testAnObjectWhoseMethodThrowsRejectsItsWholeBatch(): void
    {
        $throwsOnString = new class () {
            public function __toString(): string
            {
                throw new \RuntimeException('no text for this cell');
            }
        };
        $throwsOnFormat = new class ('2026-01-02 03:04:05') extends \DateTime {
            public function format(string $format): string
            {
                throw new \LogicException('no format for this date');
            }
        };
        $e = new \Fluxo\Exporter(['columns' => ['id', 'value'], 'csv' => ['bom' => false]]);
        $e->addBatch([[1, 'first']]);
        foreach ([[$throwsOnString, \RuntimeException::class], [$throwsOnFormat, \LogicException::class]] as [$object, $class]) {
            try {
                $e->addBatch([[2, 'kept only if the batch were split'], [3, $object]]);
                self::fail('addBatch accepted a batch whose object threw');
            } catch (\Throwable $thrown) {
                self::assertInstanceOf($class, $thrown);
            }
        }
        $e->addBatch([[4, 'last']]);
        $r = $e->finish();
        self::assertSame(2, $r->records);
        self::assertSame([['id', 'value'], ['1', 'first'], ['4', 'last']], $this->readCsv($r->path));
    }

    /**
     * @return iterable<string, array{string}>
     */
    public static function reentrantCallProvider(): iterable
    {
        yield 'addRow' => ['addRow'];
        yield 'addBatch' => ['addBatch'];
        yield 'sheet' => ['sheet'];
        yield 'finish' => ['finish'];
        yield 'finishAsync' => ['finishAsync'];
        yield 'cancel' => ['cancel'];
        yield '__construct' => ['__construct'];
        yield 'new' => ['new'];
    }

    /**
     * A cell's __toString() that calls the exporter reading it is refused:
     * an added row would land before the batch being read, a new sheet
     * would take that batch, a finish would end the export under it. The
     * batch is rejected like any other whose object threw, and the export
     * goes on with its rows in order.
     *
     * @dataProvider reentrantCallProvider
     */
    public function testACellCallingTheExporterReadingItIsRefused(string $method): void
    {
        $e = new \Fluxo\Exporter(['format' => 'xlsx', 'columns' => ['v']]);
        $cell = new class ($e, $method) {
            public function __construct(private \Fluxo\Exporter $exporter, private string $method)
            {
            }

            public function __toString(): string
            {
                match ($this->method) {
                    'addRow' => $this->exporter->addRow(['inner']),
                    'addBatch' => $this->exporter->addBatch([['inner']]),
                    'sheet' => $this->exporter->sheet('Second'),
                    'finish' => $this->exporter->finish(),
                    'finishAsync' => $this->exporter->finishAsync(),
                    'cancel' => $this->exporter->cancel(),
                    // Would replace, and free, the exporter reading this cell.
                    '__construct' => $this->exporter->__construct(['columns' => ['p', 'q']]),
                    'new' => new \Fluxo\Exporter(['columns' => ['p']]),
                };
                return 'object';
            }
        };
        $e->addBatch([['first']]);
        try {
            $e->addBatch([['second'], [$cell]]);
            self::fail("addBatch accepted a cell that called $method()");
        } catch (\Fluxo\ExportException $thrown) {
            $called = $method === 'new' ? '__construct' : $method;
            self::assertMatchesRegularExpression(
                "/^Exporter::{$called}\\(\\) was called while (this|an) exporter was reading rows/",
                $thrown->getMessage()
            );
        }
        $e->addBatch([['last']]);
        $r = $e->finish();
        $book = $this->readXlsx($r->path);
        self::assertSame(['Sheet1'], $book['sheetnames']);
        self::assertSame([['v'], ['first'], ['last']], $book['sheets'][0]['rows']);
    }

    /**
     * A fatal error in a cell's __toString() makes PHP jump back over
     * Fluxo's frames. The exporter is no longer marked as reading rows, so
     * a shutdown function can still cancel it and export with a new one.
     *
     * @group fatal-error
     */
    public function testAFatalErrorInACellLeavesFluxoUsableInShutdownFunctions(): void
    {
        $child = ChildPhp::run(<<<'PHP'
            ini_set('display_errors', '0');
            $e = new Fluxo\Exporter(['columns' => ['a']]);
            register_shutdown_function(static function () use ($e): void {
                $e->cancel();
                $next = new Fluxo\Exporter(['columns' => ['a']]);
                $next->addRow(['after the fatal error']);
                echo json_encode(['records' => $next->finish()->records, 'state' => Fluxo\Exporter::status($e->taskId())?->state]), "\n";
            });
            $cell = new class () {
                public function __toString(): string
                {
                    trigger_error('a fatal error while a cell is read', E_USER_ERROR);
                    return '';
                }
            };
            $e->addBatch([['first'], [$cell]]);
            PHP);
        self::assertSame(255, $child->exitCode, $child->describe());
        self::assertSame(['records' => 1, 'state' => 'CANCELLED'], $child->json(), $child->describe());
    }

    public function testCsvStringableObject(): void
    {
        $obj = new class () {
            public function __toString(): string
            {
                return 'stringable, "quoted"';
            }
        };
        $r = $this->exportOne(['columns' => ['v', ['name' => 's', 'type' => 'string']], 'csv' => ['bom' => false]], [[$obj, $obj]]);
        self::assertSame("v,s\n\"stringable, \"\"quoted\"\"\",\"stringable, \"\"quoted\"\"\"\n", file_get_contents($r->path));
    }

    /**
     * @return iterable<string, array{string, mixed, string}>
     */
    public static function csvTypedProvider(): iterable
    {
        // string
        yield 'string: int beyond 2^53 exact' => ['string', 9007199254740993, '9007199254740993'];
        yield 'string: PHP_INT_MAX exact' => ['string', PHP_INT_MAX, '9223372036854775807'];
        yield 'string: long digit string exact' => ['string', '12345678901234567890', '12345678901234567890'];
        yield 'string: text' => ['string', 'abc', 'abc'];
        yield 'string: null' => ['string', null, ''];
        // int
        yield 'int: int' => ['int', 42, '42'];
        yield 'int: numeric string' => ['int', '42', '42'];
        yield 'int: negative numeric string' => ['int', '-7', '-7'];
        yield 'int: big numeric string' => ['int', '9223372036854775807', '9223372036854775807'];
        yield 'int: null' => ['int', null, ''];
        // number
        yield 'number: float' => ['number', 2.5, '2.5'];
        yield 'number: int' => ['number', 7, '7'];
        yield 'number: numeric string' => ['number', '3.25', '3.25'];
        yield 'number: integer string' => ['number', '10', '10'];
        yield 'number: 1e20' => ['number', 1e20, '100000000000000000000'];
        yield 'number: 18-digit integer string exact' => ['number', '123456789012345678', '123456789012345678'];
        yield 'number: 2^53 + 1 as a string exact' => ['number', '9007199254740993', '9007199254740993'];
        yield 'number: 23-digit integer string exact' => ['number', '12345678901234567890123', '12345678901234567890123'];
        yield 'number: null' => ['number', null, ''];
        // bool
        yield 'bool: true' => ['bool', true, 'TRUE'];
        yield 'bool: false' => ['bool', false, 'FALSE'];
        yield 'bool: 1' => ['bool', 1, 'TRUE'];
        yield 'bool: 0' => ['bool', 0, 'FALSE'];
        yield 'bool: "true"' => ['bool', 'true', 'TRUE'];
        yield 'bool: "false"' => ['bool', 'false', 'FALSE'];
        yield 'bool: "yes"' => ['bool', 'yes', 'TRUE'];
        yield 'bool: "no"' => ['bool', 'no', 'FALSE'];
        yield 'bool: "1"' => ['bool', '1', 'TRUE'];
        yield 'bool: "0"' => ['bool', '0', 'FALSE'];
        yield 'bool: ""' => ['bool', '', 'FALSE'];
        yield 'bool: null' => ['bool', null, ''];
        yield 'bool: "on"' => ['bool', 'On', 'TRUE'];
        yield 'bool: "n"' => ['bool', 'n', 'FALSE'];
        // date
        yield 'date: DateTimeImmutable' => ['date', self::utc('2026-11-29 10:20:30'), '2026-11-29'];
        yield 'date: Y-m-d' => ['date', '2026-11-29', '2026-11-29'];
        yield 'date: Y-m-d H:i:s' => ['date', '2026-11-29 10:20:30', '2026-11-29'];
        yield 'date: ISO 8601 keeps wall clock' => ['date', '2026-11-29T01:00:00+08:00', '2026-11-29'];
        yield 'date: timestamp' => ['date', 0, '1970-01-01'];
        yield 'date: null' => ['date', null, ''];
        // datetime
        yield 'datetime: DateTimeImmutable in its own zone' => ['datetime', new \DateTimeImmutable('2026-11-29 10:20:30.5', new \DateTimeZone('Asia/Shanghai')), '2026-11-29 10:20:30'];
        yield 'datetime: DateTimeImmutable in year 10000' => ['datetime', self::utc('2026-01-01 08:00:00')->setDate(10000, 1, 1), '10000-01-01 08:00:00'];
        yield 'date: DateTimeImmutable in year -44' => ['date', self::utc('2026-01-01 00:00:00')->setDate(-44, 3, 15), '-0044-03-15'];
        yield 'datetime: DateTime' => ['datetime', new \DateTime('2026-11-29 10:20:30', new \DateTimeZone('UTC')), '2026-11-29 10:20:30'];
        yield 'datetime: Y-m-d' => ['datetime', '2026-11-29', '2026-11-29 00:00:00'];
        yield 'datetime: Y-m-d H:i:s' => ['datetime', '2026-11-29 10:20:30', '2026-11-29 10:20:30'];
        yield 'datetime: ISO 8601 keeps wall clock' => ['datetime', '2026-11-29T23:30:00+08:00', '2026-11-29 23:30:00'];
        yield 'datetime: ISO 8601 Z' => ['datetime', '2026-11-29T10:00:00Z', '2026-11-29 10:00:00'];
        yield 'datetime: timestamp in the default zone (UTC here)' => ['datetime', 1764410400, gmdate('Y-m-d H:i:s', 1764410400)];
        yield 'datetime: null' => ['datetime', null, ''];
        // time
        yield 'time: DateTimeImmutable' => ['time', self::utc('2026-11-29 10:20:30'), '10:20:30'];
        yield 'time: Y-m-d H:i:s' => ['time', '2026-11-29 23:59:58', '23:59:58'];
        yield 'time: ISO 8601 keeps wall clock' => ['time', '2026-11-29T23:30:00+08:00', '23:30:00'];
        yield 'time: timestamp' => ['time', 3661, '01:01:01'];
        yield 'time: null' => ['time', null, ''];
    }

    /**
     * @dataProvider csvTypedProvider
     */
    public function testCsvTypedColumn(string $type, mixed $value, string $expected): void
    {
        $r = $this->exportOne(
            ['columns' => [['name' => 'v', 'type' => $type], 'marker'], 'csv' => ['bom' => false]],
            [[$value, 'm']]
        );
        self::assertSame([['v', 'marker'], [$expected, 'm']], $this->readCsv($r->path));
    }

    public function testTimestampsAreShownInTheTimezoneOption(): void
    {
        $r = $this->exportOne(
            [
                'columns' => [['name' => 'at', 'type' => 'datetime'], ['name' => 'day', 'type' => 'date']],
                'timezone' => 'Asia/Shanghai',
                'csv' => ['bom' => false],
            ],
            // 2023-11-14 22:13:20 and 17:30:00 UTC: the next day in Shanghai.
            [[1700000000, 1699983000]]
        );
        self::assertSame([['at', 'day'], ['2023-11-15 06:13:20', '2023-11-15']], $this->readCsv($r->path));

        $e = new \Fluxo\Exporter(['columns' => ['a'], 'timezone' => 'US/Eastern']);
        $e->cancel();
        $this->addToAssertionCount(1); // PHP's older zone names are taken too
    }

    public function testTimestampsAreShownInPhpsDefaultTimezoneAsDateShowsThem(): void
    {
        $timestamps = [
            0, -1, 1772953200 - 1, 1772953200, 1793512800 - 1, 1793512800, // 2026's DST changes
            -2717650800 - 1, -2717650800, // 1883: local mean time ends
            -8520336000, 10430000000, // 1700 and 2300: beyond the table read once
        ];
        $default = date_default_timezone_get();
        // CET, GMT and EST: zones PHP keeps as a rule or an offset, with no
        // table of transitions.
        foreach (['America/New_York', 'CET', 'GMT', 'EST'] as $zone) {
            date_default_timezone_set($zone);
            try {
                $r = $this->exportOne(
                    ['columns' => [['name' => 'at', 'type' => 'datetime']], 'csv' => ['bom' => false]],
                    array_map(static fn (int $t): array => [$t], $timestamps)
                );
                // As a DateTime shows them. date() agrees but for the legacy
                // zones past 2037, where PHP's two disagree with each other.
                $expected = array_map(
                    static fn (int $t): array => [
                        (new \DateTime('@' . $t))->setTimezone(new \DateTimeZone($zone))->format('Y-m-d H:i:s'),
                    ],
                    $timestamps
                );
            } finally {
                date_default_timezone_set($default);
            }
            self::assertSame([['at'], ...$expected], $this->readCsv($r->path), $zone);
        }
    }

    /**
     * What `new DateTimeZone()` takes: any case, abbreviations and offsets, as a
     * DateTime with an offset reports its zone (`+08:00`).
     */
    public function testTimezoneTakesWhatDateTimeZoneTakes(): void
    {
        $timestamps = [0, 1700000000, -8520336000, 10430000000];
        $date = new \DateTimeImmutable('2026-11-30 08:00:00', new \DateTimeZone('UTC'));
        foreach (['utc', ' UTC', '+08:00', '-05:30', 'cet', $date->setTimezone(new \DateTimeZone('+09:00'))->getTimezone()->getName()] as $zone) {
            $r = $this->exportOne(
                ['columns' => [['name' => 'at', 'type' => 'datetime']], 'timezone' => $zone, 'csv' => ['bom' => false]],
                [...array_map(static fn (int $t): array => [$t], $timestamps), [$date]]
            );
            $expected = array_map(
                static fn (int $t): array => [(new \DateTime('@' . $t))->setTimezone(new \DateTimeZone($zone))->format('Y-m-d H:i:s')],
                $timestamps
            );
            $expected[] = [$date->setTimezone(new \DateTimeZone($zone))->format('Y-m-d H:i:s')];
            self::assertSame([['at'], ...$expected], $this->readCsv($r->path), $zone);
        }
    }

    /**
     * The zone is probed with timezone_open(), warnings off: a NUL would make it
     * throw, and an error handler that throws on every warning would too.
     * Neither escapes, and error_reporting() is as it was.
     */
    public function testAZoneProbeLeavesNoExceptionAndTheErrorLevelAsItWas(): void
    {
        $level = error_reporting();
        set_error_handler(static function (int $errno, string $message): never {
            throw new \ErrorException($message, 0, $errno);
        });
        try {
            foreach (["UTC\0", 'Mars/Olympus', ''] as $zone) {
                try {
                    new \Fluxo\Exporter(['columns' => ['a'], 'timezone' => $zone]);
                    self::fail('refused: ' . json_encode($zone));
                } catch (\Fluxo\InvalidOptionException $e) {
                    self::assertStringContainsString('unknown time zone', $e->getMessage());
                    self::assertNull($e->getPrevious());
                }
                self::assertSame($level, error_reporting(), json_encode($zone));
            }
        } finally {
            restore_error_handler();
        }
    }

    public function testANameOfTheZoneDatabaseThatIsNoZoneIsRefused(): void
    {
        $this->expectException(\Fluxo\InvalidOptionException::class);
        $this->expectExceptionMessage('unknown time zone "leapseconds"');
        new \Fluxo\Exporter(['columns' => ['a'], 'timezone' => 'leapseconds']);
    }

    public function testCsvAllTypesInOneFile(): void
    {
        $rows = [];
        for ($i = 0; $i < 100; $i++) {
            $rows[] = [
                $i,
                $i + 0.5,
                'name ' . $i,
                $i % 2 === 0,
                self::utc('2026-01-01 00:00:00')->modify("+{$i} hours"),
                $i % 3 === 0 ? null : 'n' . $i,
            ];
        }
        $r = $this->exportOne(['columns' => ['i', 'f', 's', 'b', 'dt', 'maybe']], $rows);
        $this->assertResult($r, 'csv', 100);
        $back = $this->readCsv($r->path);
        self::assertCount(101, $back);
        self::assertSame(['0', '0.5', 'name 0', 'TRUE', '2026-01-01 00:00:00', ''], $back[1]);
        self::assertSame(['99', '99.5', 'name 99', 'FALSE', '2026-01-05 03:00:00', ''], $back[100]);
        self::assertSame(['25', '25.5', 'name 25', 'FALSE', '2026-01-02 01:00:00', 'n25'], $back[26]);
    }

    /**
     * @return iterable<string, array{string, mixed, mixed, string, string}>
     *         type, PHP value, expected openpyxl value, expected python type, expected number format
     */
    public static function xlsxTypedProvider(): iterable
    {
        yield 'auto: int' => ['auto', 42, 42, 'int', 'General'];
        yield 'auto: negative float' => ['auto', -2.75, -2.75, 'float', 'General'];
        yield 'auto: 15 digits stays number' => ['auto', 999999999999999, 999999999999999, 'int', 'General'];
        yield 'auto: 16+ digits is text' => ['auto', 1234567890123456789, '1234567890123456789', 'str', 'General'];
        yield 'auto: bool' => ['auto', true, true, 'bool', 'General'];
        yield 'auto: string' => ['auto', 'abc', 'abc', 'str', 'General'];
        yield 'auto: numeric string stays text' => ['auto', '42', '42', 'str', 'General'];
        yield 'string: int beyond 2^53 is exact text' => ['string', 9007199254740993, '9007199254740993', 'str', 'General'];
        yield 'string: small int is text' => ['string', 5, '5', 'str', 'General'];
        yield 'int: numeric string is a number' => ['int', '42', 42, 'int', 'General'];
        yield 'int: int' => ['int', -3, -3, 'int', 'General'];
        yield 'number: numeric string is a number' => ['number', '3.25', 3.25, 'float', 'General'];
        yield 'number: 15-digit integer string is a number' => ['number', '999999999999999', 999999999999999, 'int', 'General'];
        yield 'number: 18-digit integer string is exact text' => ['number', '123456789012345678', '123456789012345678', 'str', 'General'];
        yield 'bool: "yes"' => ['bool', 'yes', true, 'bool', 'General'];
        yield 'bool: "0"' => ['bool', '0', false, 'bool', 'General'];
        yield 'bool: 1' => ['bool', 1, true, 'bool', 'General'];
        yield 'date: string' => ['date', '2026-11-29', '2026-11-29T00:00:00', 'datetime', 'yyyy-mm-dd'];
        yield 'date: timestamp' => ['date', 86400, '1970-01-02T00:00:00', 'datetime', 'yyyy-mm-dd'];
        yield 'datetime: ISO keeps wall clock' => ['datetime', '2026-11-29T23:30:00+08:00', '2026-11-29T23:30:00', 'datetime', 'yyyy-mm-dd hh:mm:ss'];
        yield 'datetime: timestamp UTC' => ['datetime', 1764410400, gmdate('Y-m-d\TH:i:s', 1764410400), 'datetime', 'yyyy-mm-dd hh:mm:ss'];
        yield 'time: string' => ['time', '2026-11-29 06:07:08', '06:07:08', 'time', 'hh:mm:ss'];
    }

    /**
     * @dataProvider xlsxTypedProvider
     */
    public function testXlsxTypedColumn(string $type, mixed $value, mixed $expected, string $pyType, string $format): void
    {
        $r = $this->exportOne(
            ['format' => 'xlsx', 'columns' => [['name' => 'v', 'type' => $type], 'marker']],
            [[$value, 'm']]
        );
        $sheet = $this->readXlsx($r->path)['sheets'][0];
        self::assertSame(['v', 'marker'], $sheet['rows'][0]);
        self::assertSame($expected, $sheet['rows'][1][0], 'value');
        self::assertSame($pyType, $sheet['types'][1][0], 'cell type as read by openpyxl');
        self::assertSame($format, $sheet['number_formats'][1][0], 'number format');
    }

    public function testXlsxNullsAreEmptyCellsInEveryType(): void
    {
        $types = ['auto', 'string', 'int', 'number', 'bool', 'date', 'datetime', 'time'];
        $columns = array_map(static fn (string $t): array => ['name' => $t, 'type' => $t], $types);
        $columns[] = 'marker';
        $r = $this->exportOne(['format' => 'xlsx', 'columns' => $columns], [array_merge(array_fill(0, 8, null), ['m'])]);
        $sheet = $this->readXlsx($r->path)['sheets'][0];
        self::assertSame(array_merge($types, ['marker']), $sheet['rows'][0]);
        self::assertSame(array_merge(array_fill(0, 8, null), ['m']), $sheet['rows'][1]);
    }

    public function testXlsxFloats(): void
    {
        $values = [0.1, 0.1 + 0.2, 1e-10, 123456.789, -0.5, 1e15, 2.5e300];
        $r = $this->exportOne(['format' => 'xlsx', 'columns' => ['f']], array_map(static fn (float $f): array => [$f], $values));
        $rows = $this->readXlsx($r->path)['sheets'][0]['rows'];
        array_shift($rows);
        foreach ($values as $i => $f) {
            self::assertIsNumeric($rows[$i][0]);
            self::assertSame($f, (float) $rows[$i][0], "float {$f} round-trips exactly");
        }
    }
}
