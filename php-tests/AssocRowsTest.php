<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Exporter;
use Fluxo\InvalidRowException;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * Associative rows: values looked up by each column's key (default: its name).
 */
final class AssocRowsTest extends FluxoTestCase
{
    /**
     * @return iterable<string, array{string}>
     */
    public static function formatProvider(): iterable
    {
        yield 'csv' => ['csv'];
        yield 'xlsx' => ['xlsx'];
    }

    /**
     * @return list<list<mixed>>
     */
    private function rowsAsStrings(string $format, \Fluxo\ExportResult $r): array
    {
        $rows = $this->dataRows($r, false);
        if ($format === 'csv') {
            return $rows;
        }
        // normalise openpyxl values to what the CSV writer would print
        return array_map(
            static fn (array $row): array => array_map(
                static fn (mixed $v): string => $v === null ? '' : (is_bool($v) ? ($v ? 'TRUE' : 'FALSE') : (string) $v),
                $row
            ),
            $rows
        );
    }

    /**
     * @dataProvider formatProvider
     */
    public function testLookupByNameAndKey(string $format): void
    {
        $e = new Exporter([
            'format' => $format,
            'columns' => [
                'Customer',
                ['name' => 'E-mail', 'key' => 'email'],
                ['name' => 'Ten', 'key' => 10],
                ['name' => 'Amount', 'type' => 'int'],
            ],
        ]);
        self::assertSame(2, $e->addBatch([
            ['Customer' => 'Ann', 'email' => 'ann@example.com', 10 => 'x', 'Amount' => 5],
            // key order does not matter, extra keys are ignored
            ['Amount' => '7', 'extra' => 'ignored', 10 => 'y', 'email' => 'bob@example.com', 'Customer' => 'Bob', 'E-mail' => 'not used'],
        ]));
        self::assertSame(3, $e->addRow(['email' => 'c@example.com', 'Customer' => 'Cid', 'Amount' => 9, 10 => 'z']));
        $r = $e->finish();
        $this->assertResult($r, $format, 3);
        self::assertSame(
            [
                ['Customer', 'E-mail', 'Ten', 'Amount'],
                ['Ann', 'ann@example.com', 'x', '5'],
                ['Bob', 'bob@example.com', 'y', '7'],
                ['Cid', 'c@example.com', 'z', '9'],
            ],
            $this->rowsAsStrings($format, $r)
        );
    }

    /**
     * Rows are read bucket by bucket while their keys follow the columns, and
     * by lookup from the first key that does not: every shape must give the
     * same cells.
     *
     * @return iterable<string, array{array<array-key, mixed>}>
     */
    public static function keyOrderProvider(): iterable
    {
        yield 'in column order' => [['名字' => 'Ann', 'ab' => 1, 10 => 'x', 'c' => null]];
        yield 'reversed' => [['c' => null, 10 => 'x', 'ab' => 1, '名字' => 'Ann']];
        yield 'extra keys in between' => [['z' => 0, '名字' => 'Ann', 'ba' => 2, 'ab' => 1, 10 => 'x', 'a' => 3, 'c' => null]];
        $deleted = ['名字' => 'Ann', 'ab' => 0, 10 => 'x', 'c' => null];
        unset($deleted['ab']);
        $deleted['ab'] = 1;
        yield 'a key deleted and set again (a hole, then the key last)' => [$deleted];
        $holes = ['名字' => 'Ann', 'gone' => 0, 'ab' => 1, 10 => 'x', 'c' => null];
        unset($holes['gone']);
        yield 'a hole in column order' => [$holes];
        yield 'same length, other bytes first' => [['名字' => 'Ann', 'ba' => 9, 'ab' => 1, 10 => 'x', 'c' => null]];
    }

    /**
     * @dataProvider keyOrderProvider
     *
     * @param array<array-key, mixed> $row
     */
    public function testEveryKeyOrderGivesTheSameCells(array $row): void
    {
        $e = new Exporter(['columns' => ['名字', 'ab', ['name' => 'Ten', 'key' => 10], 'c']]);
        $byReference = $row;
        $rows = [$row, &$byReference, $row];
        self::assertSame(3, $e->addBatch($rows));
        $r = $e->finish();
        $this->assertResult($r, 'csv', 3);
        self::assertSame(array_fill(0, 3, ['Ann', '1', 'x', '']), $this->dataRows($r));
    }

    /**
     * @dataProvider formatProvider
     */
    public function testPresentKeyWithNullIsNotMissing(string $format): void
    {
        $r = $this->exportOne(
            ['format' => $format, 'columns' => ['a', 'b', 'c']],
            [['a' => null, 'b' => 'x', 'c' => null], ['c' => 1, 'b' => null, 'a' => 'y']]
        );
        $this->assertResult($r, $format, 2);
        self::assertSame([['a', 'b', 'c'], ['', 'x', ''], ['y', '', '1']], $this->rowsAsStrings($format, $r));
    }

    /**
     * @dataProvider formatProvider
     */
    public function testListAndAssocRowsMayBeMixed(string $format): void
    {
        $r = $this->exportOne(
            ['format' => $format, 'columns' => ['a', 'b']],
            [['1', '2'], ['b' => '4', 'a' => '3'], ['5', '6']]
        );
        $this->assertResult($r, $format, 3);
        self::assertSame([['a', 'b'], ['1', '2'], ['3', '4'], ['5', '6']], $this->rowsAsStrings($format, $r));
    }

    /**
     * @dataProvider formatProvider
     */
    public function testAssocRowWithMoreKeysThanColumnsIsFine(string $format): void
    {
        $row = ['id' => 1];
        for ($i = 0; $i < 50; $i++) {
            $row['extra' . $i] = [1, 2, 3]; // extra keys are never looked at, even when not valid cells
        }
        $r = $this->exportOne(['format' => $format, 'columns' => ['id']], [$row]);
        $this->assertResult($r, $format, 1);
        self::assertSame([['id'], ['1']], $this->rowsAsStrings($format, $r));
    }

    /**
     * @dataProvider formatProvider
     */
    public function testMissingKeyRejectsTheBatch(string $format): void
    {
        $e = new Exporter(['format' => $format, 'columns' => ['name', ['name' => 'E-mail', 'key' => 'email']]]);
        self::assertSame(1, $e->addBatch([['name' => 'ok', 'email' => 'ok@example.com']]));
        try {
            $e->addBatch([
                ['name' => 'a', 'email' => 'a@example.com'],
                ['name' => 'b', 'E-mail' => 'wrong key'],
            ]);
            self::fail('a missing key must be rejected');
        } catch (InvalidRowException $ex) {
            self::assertStringContainsString('row 1, column "E-mail": missing key "email"', $ex->getMessage());
        }
        self::assertSame(2, $e->addRow(['email' => 'c@example.com', 'name' => 'c']));
        $r = $e->finish();
        $this->assertResult($r, $format, 2);
        self::assertSame(
            [['name', 'E-mail'], ['ok', 'ok@example.com'], ['c', 'c@example.com']],
            $this->rowsAsStrings($format, $r)
        );
    }

    public function testPdoFetchBothRowsAreReadByName(): void
    {
        // PDO::FETCH_BOTH, PDO's default: each value by name, then by number.
        $e = new Exporter(['columns' => ['id', 'name']]);
        $e->addBatch([
            ['id' => 1, 0 => 1, 'name' => 'Ann', 1 => 'Ann'],
            ['id' => 2, 0 => 2, 'name' => 'Bob', 1 => 'Bob'],
        ]);
        self::assertSame([['1', 'Ann'], ['2', 'Bob']], $this->dataRows($e->finish()));
    }

    /**
     * A row with a text key is read by key, whatever the type of its first key:
     * it was read as a list for starting with key 0, and refused for want of
     * key 1. A row of integer keys only is a list, packed by PHP or not.
     */
    public function testARowWithATextKeyIsReadByKeyWhateverItsFirstKey(): void
    {
        $e = new Exporter(['columns' => [['name' => 'A', 'key' => 0], ['name' => 'B', 'key' => 'b']]]);
        $e->addBatch([[0 => 'x', 'b' => 'y'], ['b' => 'w', 0 => 'v'], ['p', 'q'], [1 => 's', 0 => 'r']]);
        self::assertSame([['x', 'y'], ['v', 'w'], ['p', 'q'], ['r', 's']], $this->dataRows($e->finish()));
    }

    public function testMissingIntKeyIsReported(): void
    {
        $e = new Exporter(['columns' => [['name' => 'Ten', 'key' => 10], 'x']]);
        try {
            $e->addRow(['x' => 1, 11 => 'nope']);
            self::fail('a missing int key must be rejected');
        } catch (InvalidRowException $ex) {
            self::assertSame('row 0, column "Ten": missing key "10"', $ex->getMessage());
        }
        $e->cancel();
    }

    /**
     * A row with a text key is read by key also once an element of it was
     * unset (PHP then keeps a hole in it), even with a key 0.
     */
    public function testARowWithAnUnsetElementIsReadByKeyAsBefore(): void
    {
        $e = new Exporter(['columns' => ['b', 'x'], 'csv' => ['bom' => false]]);
        $row = ['b' => 'B', 'tmp' => 0, 0 => 'zero', 'x' => 'X'];
        unset($row['tmp']);
        $e->addRow($row);
        $missing = ['b' => 'B', 'tmp' => 0, 0 => 'zero', 1 => 'one'];
        unset($missing['tmp']);
        try {
            $e->addRow($missing);
            self::fail('a row without key "x" must be rejected');
        } catch (InvalidRowException $ex) {
            self::assertSame('row 0, column "x": missing key "x"', $ex->getMessage());
        }
        self::assertSame([['B', 'X']], $this->dataRows($e->finish()));
    }

    /**
     * A row of integer keys that do not start at 0 is read by key, and
     * the error for it says so: `[1 => 'x', 2 => 'y']` is no list.
     */
    public function testARowOfIntegerKeysFromOneIsReadByKeyAndTheErrorSaysWhy(): void
    {
        $e = new Exporter(['columns' => ['a', 'b']]);
        foreach ([[1 => 'x', 2 => 'y'], [5 => 'x', 6 => 'y']] as $row) {
            try {
                $e->addRow($row);
                self::fail('a row without key "a" must be rejected');
            } catch (InvalidRowException $ex) {
                self::assertSame(
                    'row 0, column "a": missing key "a": the row was read by key, as its integer keys do not start at 0',
                    $ex->getMessage()
                );
            }
        }
        $e->cancel();
    }
}
