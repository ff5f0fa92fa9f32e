<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Exporter;
use Fluxo\InvalidOptionException;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * Bad-input cases of issue #7 not covered by InvalidRowTest and InvalidOptionTest: very wide rows and
 * duplicate column names.
 */
final class BadInputCatalogueTest extends FluxoTestCase
{
    public function testTwentyThousandColumnsAreACsvButNotAnXlsxSheet(): void
    {
        $columns = array_map(static fn (int $i): string => "c$i", range(1, 20000));
        $row = range(1, 20000);
        $r = $this->exportOne(['columns' => $columns, 'csv' => ['bom' => false]], [$row, $row]);
        $rows = $this->dataRows($r);
        self::assertCount(2, $rows);
        self::assertCount(20000, $rows[1]);
        self::assertSame('20000', $rows[1][19999]);

        $this->expectException(InvalidOptionException::class);
        $this->expectExceptionMessage('an XLSX sheet holds at most 16,384 columns, not 20000');
        new Exporter(['format' => 'xlsx', 'columns' => $columns]);
    }

    public function testDuplicateColumnNamesAreRefused(): void
    {
        $this->expectException(InvalidOptionException::class);
        $this->expectExceptionMessage('columns[2]: the name "id" is already used by columns[0]; column names must be unique');
        new Exporter(['columns' => ['id', 'name', ['name' => 'id', 'key' => 'other_id']]]);
    }
}
