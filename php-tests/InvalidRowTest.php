<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\ExportException;
use Fluxo\Exporter;
use Fluxo\InvalidRowException;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * Invalid rows: Fluxo\InvalidRowException naming row (0-based within the batch),
 * column and PHP type (as get_debug_type() spells it); the whole batch is rejected
 * and the export stays usable.
 */
final class InvalidRowTest extends FluxoTestCase
{
    /**
     * Cases: columns, a good row, a factory for the bad row, message fragments.
     * The bad row is placed at index 1 of a 3-row batch.
     *
     * @return array<string, array{list<mixed>, list<mixed>, \Closure(): mixed, list<string>}>
     */
    private static function cases(): array
    {
        $auto = ['id', 'val'];
        $good = [1, 'ok'];
        $typed = static fn (string $type): array => ['id', ['name' => 'val', 'type' => $type]];

        return [
            'nested array' => [$auto, $good, static fn () => [2, [1, 2]], ['row 1, column "val"', '(got array)']],
            'resource' => [
                $auto,
                $good,
                static fn () => [2, fopen('php://memory', 'r')],
                ['row 1, column "val"', '(got resource (stream))'],
            ],
            'closure' => [
                $auto,
                $good,
                static fn () => [2, static fn () => 1],
                ['row 1, column "val"', '(got Closure)'],
            ],
            'stdClass' => [
                $auto,
                $good,
                static fn () => [2, new \stdClass()],
                ['row 1, column "val"', '(got stdClass)'],
            ],
            'ArrayObject' => [
                $auto,
                $good,
                static fn () => [2, new \ArrayObject([1])],
                ['row 1, column "val"', '(got ArrayObject)'],
            ],
            'invalid UTF-8 \xff' => [
                $auto,
                $good,
                static fn () => [2, "ab\xffcd"],
                ['row 1, column "val"', 'UTF-8', '(got string)'],
            ],
            'truncated UTF-8' => [
                $auto,
                $good,
                static fn () => [2, "caf\xc3"],
                ['row 1, column "val"', 'UTF-8', '(got string)'],
            ],
            'invalid UTF-8 in string column' => [
                $typed('string'),
                $good,
                static fn () => [2, "\xff"],
                ['row 1, column "val"', 'UTF-8', '(got string)'],
            ],
            // PHP cannot throw a message holding a NUL: it is shown as \0.
            'missing key with a NUL byte' => [
                ['id', "v\0al"],
                $good,
                static fn () => ['id' => 2],
                ['row 1, column "v\\0al": missing key "v\\0al"'],
            ],
            'NAN' => [$auto, $good, static fn () => [2, NAN], ['row 1, column "val"', '(got float)']],
            'INF' => [$auto, $good, static fn () => [2, INF], ['row 1, column "val"', '(got float)']],
            '-INF' => [$auto, $good, static fn () => [2, -INF], ['row 1, column "val"', '(got float)']],
            'NAN in number column' => [
                $typed('number'),
                [1, 1.5],
                static fn () => [2, NAN],
                ['row 1, column "val"', '(got float)'],
            ],
            'int column: "abc"' => [
                $typed('int'),
                [1, 5],
                static fn () => [2, 'abc'],
                ['row 1, column "val"', 'not an integer', '(got string)'],
            ],
            'int column: "12abc"' => [
                $typed('int'),
                [1, 5],
                static fn () => [2, '12abc'],
                ['row 1, column "val"', 'not an integer', '(got string)'],
            ],
            'int column: a 20-digit id' => [
                $typed('int'),
                [1, 5],
                static fn () => [2, '12345678901234567890'],
                ['row 1, column "val"', 'beyond the 64-bit range of an int column', 'a string column keeps its digits'],
            ],
            'number column: "abc"' => [
                $typed('number'),
                [1, 5],
                static fn () => [2, 'abc'],
                ['row 1, column "val"', 'not a number', '(got string)'],
            ],
            'number column: "1.2.3"' => [
                $typed('number'),
                [1, 5],
                static fn () => [2, '1.2.3'],
                ['row 1, column "val"', 'not a number', '(got string)'],
            ],
            'number column: "1e400" (beyond a double)' => [
                $typed('number'),
                [1, 5],
                static fn () => [2, '1e400'],
                ['row 1, column "val"', 'beyond ±1.8e308', '(got string)'],
            ],
            'bool column: 2' => [
                $typed('bool'),
                [1, true],
                static fn () => [2, 2],
                ['row 1, column "val"', 'not a boolean', '(got int)'],
            ],
            'bool column: 0.5' => [
                $typed('bool'),
                [1, true],
                static fn () => [2, 0.5],
                ['row 1, column "val"', 'not a boolean', '(got float)'],
            ],
            'date column: garbage' => [
                $typed('date'),
                [1, '2026-11-29'],
                static fn () => [2, 'not a date at all'],
                ['row 1, column "val"', 'not a date', '(got string)'],
            ],
            'date column: month 13' => [
                $typed('date'),
                [1, '2026-11-29'],
                static fn () => [2, '2026-13-45'],
                ['row 1, column "val"', 'not a date', '(got string)'],
            ],
            'datetime column: garbage' => [
                $typed('datetime'),
                [1, '2026-11-29'],
                static fn () => [2, 'yesterday-ish'],
                ['row 1, column "val"', 'not a date', '(got string)'],
            ],
            'time column: garbage' => [
                $typed('time'),
                [1, '2026-11-29 10:00:00'],
                static fn () => [2, '25:00:00'],
                ['row 1, column "val"', 'not a time (expected H:i:s', '(got string)'],
            ],
            'bool column: "maybe"' => [
                $typed('bool'),
                [1, true],
                static fn () => [2, 'maybe'],
                ['row 1, column "val"', '(got string)'],
            ],
            'string column: array' => [
                $typed('string'),
                $good,
                static fn () => [2, ['x']],
                ['row 1, column "val"', '(got array)'],
            ],
            'row is a string' => [$auto, $good, static fn () => 'not a row', ['row 1: expected an array (got string)']],
            'row is an int' => [$auto, $good, static fn () => 42, ['row 1: expected an array (got int)']],
            'row is null' => [$auto, $good, static fn () => null, ['row 1: expected an array (got null)']],
            'row is an object' => [
                $auto,
                $good,
                static fn () => new \stdClass(),
                ['row 1: expected an array (got stdClass)'],
            ],
            'too few cells' => [$auto, $good, static fn () => [1], ['row 1: has 1 cells, expected 2']],
            'too many cells' => [$auto, $good, static fn () => [1, 2, 3], ['row 1: has 3 cells, expected 2']],
            'empty row' => [$auto, $good, static fn () => [], ['row 1: has 0 cells, expected 2']],
            'missing assoc key' => [
                $auto,
                $good,
                static fn () => ['id' => 2],
                ['row 1, column "val": missing key "val"'],
            ],
            'missing custom key' => [
                ['id', ['name' => 'E-mail', 'key' => 'email']],
                $good,
                static fn () => ['id' => 2, 'E-mail' => 'x'],
                ['row 1, column "E-mail": missing key "email"'],
            ],
        ];
    }

    /**
     * @return iterable<string, array{string, list<mixed>, list<mixed>, \Closure(): mixed, list<string>}>
     */
    public static function badRowProvider(): iterable
    {
        foreach (['csv', 'xlsx'] as $format) {
            foreach (self::cases() as $name => $case) {
                yield "{$format}: {$name}" => array_merge([$format], $case);
            }
        }
    }

    /**
     * @dataProvider badRowProvider
     * @param list<mixed>       $columns
     * @param list<mixed>       $good
     * @param \Closure(): mixed $bad
     * @param list<string>      $fragments
     */
    public function testBadRowRejectsWholeBatch(string $format, array $columns, array $good, \Closure $bad, array $fragments): void
    {
        $e = new Exporter(['format' => $format, 'columns' => $columns]);
        self::assertSame(2, $e->addBatch([$good, $good]), 'first good batch');

        try {
            $e->addBatch([$good, $bad(), $good]);
            self::fail('the bad row was accepted');
        } catch (InvalidRowException $ex) {
            foreach ($fragments as $fragment) {
                self::assertStringContainsString($fragment, $ex->getMessage());
            }
            self::assertInstanceOf(ExportException::class, $ex);
        }

        // addRow() reports the same problem as row 0
        try {
            $e->addRow($bad());
            self::fail('the bad row was accepted by addRow()');
        } catch (InvalidRowException $ex) {
            foreach ($fragments as $fragment) {
                self::assertStringContainsString(str_replace('row 1', 'row 0', $fragment), $ex->getMessage());
            }
        }

        // nothing of the rejected batch counts; the export is still usable
        self::assertSame(3, $e->addBatch([$good]), 'running count unchanged by the rejected batch');
        self::assertSame(4, $e->addRow($good));
        $r = $e->finish();
        $this->assertResult($r, $format, 4);

        $rows = $this->dataRows($r);
        self::assertCount(4, $rows, 'only the rows of the good batches are in the file');
        $status = Exporter::status($r->taskId);
        self::assertNotNull($status);
        self::assertSame('COMPLETED', $status->state);
        self::assertSame(4, $status->records);
    }

    public function testRowIndexIsWithinTheBatch(): void
    {
        $e = new Exporter(['columns' => ['n']]);
        $rows = [];
        for ($i = 0; $i < 1000; $i++) {
            $rows[] = [$i];
        }
        self::assertSame(1000, $e->addBatch($rows));

        $bad = $rows;
        $bad[999] = [NAN];
        try {
            $e->addBatch($bad);
            self::fail('NAN accepted');
        } catch (InvalidRowException $ex) {
            self::assertStringContainsString('row 999, column "n"', $ex->getMessage());
            self::assertStringContainsString('(got float)', $ex->getMessage());
        }

        $bad = $rows;
        $bad[0] = ['x', 'y'];
        try {
            $e->addBatch($bad);
            self::fail('wrong cell count accepted');
        } catch (InvalidRowException $ex) {
            self::assertStringContainsString('row 0: has 2 cells, expected 1', $ex->getMessage());
        }

        self::assertSame(2000, $e->addBatch($rows));
        $r = $e->finish();
        $this->assertResult($r, 'csv', 2000);
        $back = $this->readCsv($r->path);
        self::assertCount(2001, $back);
        self::assertSame(['999'], $back[1000]);
        self::assertSame(['0'], $back[1001]);
        self::assertSame(['999'], $back[2000]);
    }

    public function testFullMessageFormat(): void
    {
        $e = new Exporter(['columns' => ['id', 'val']]);
        try {
            $e->addBatch([[1, 'a'], [2, new \stdClass()]]);
            self::fail('stdClass accepted');
        } catch (InvalidRowException $ex) {
            self::assertMatchesRegularExpression('/row 1, column "val": .+ \(got stdClass\)/', $ex->getMessage());
        }
        try {
            $e->addBatch(['nope']);
            self::fail('string row accepted');
        } catch (InvalidRowException $ex) {
            self::assertStringContainsString('row 0: expected an array (got string)', $ex->getMessage());
        }
        $e->cancel();
    }

    /**
     * A timestamp no time zone reaches is named as what it is, in a `time`
     * column too, not as text that is not a date.
     */
    public function testATimestampPastAnyDateIsNamedAsSuch(): void
    {
        foreach (['date', 'time'] as $type) {
            $e = new Exporter(['columns' => [['name' => 't', 'type' => $type]], 'timezone' => 'Asia/Shanghai']);
            try {
                $e->addRow([PHP_INT_MAX]);
                self::fail("PHP_INT_MAX accepted in a $type column");
            } catch (InvalidRowException $ex) {
                self::assertSame(
                    'row 0, column "t": a Unix timestamp too far from 1970 to be shown as a date (got int)',
                    $ex->getMessage()
                );
            }
            $e->cancel();
        }
    }

    public function testManyRejectedBatchesLeaveNothingBehind(): void
    {
        foreach (['csv', 'xlsx'] as $format) {
            $e = new Exporter(['format' => $format, 'columns' => ['n', 's']]);
            $expected = 0;
            for ($b = 0; $b < 20; $b++) {
                $rows = [];
                for ($i = 0; $i < 100; $i++) {
                    $rows[] = [$b * 100 + $i, 'row ' . ($b * 100 + $i)];
                }
                if ($b % 2 === 1) {
                    $rows[50] = [$b, "\xff"]; // odd batches are rejected
                    try {
                        $e->addBatch($rows);
                        self::fail('invalid UTF-8 accepted');
                    } catch (InvalidRowException $ex) {
                        self::assertStringContainsString('row 50, column "s"', $ex->getMessage());
                    }
                    continue;
                }
                $expected += 100;
                self::assertSame($expected, $e->addBatch($rows));
            }
            $r = $e->finish();
            $this->assertResult($r, $format, 1000);
            $rows = $this->dataRows($r);
            self::assertCount(1000, $rows, $format);
            $firstIds = array_map(static fn (array $row): string => (string) $row[0], $rows);
            $want = [];
            for ($b = 0; $b < 20; $b += 2) {
                for ($i = 0; $i < 100; $i++) {
                    $want[] = (string) ($b * 100 + $i);
                }
            }
            self::assertSame($want, $firstIds, "{$format}: exactly the good batches, in order");
        }
    }
}
