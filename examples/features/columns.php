<?php

// Column widths (fixed or from the widest value; CJK counts double), hidden
// columns, an autofilter on the header, and workbook properties.
declare(strict_types=1);

$e = new Fluxo\Exporter([
    'format' => 'xlsx',
    'autofilter' => true,
    'properties' => ['title' => 'Customers', 'author' => 'Billing', 'company' => 'ACME', 'created' => '2026-11-29 10:00:00'],
    'columns' => [
        ['name' => 'Id', 'width' => 8],
        ['name' => 'Customer', 'width' => 'auto'],
        ['name' => 'Internal note', 'hidden' => true],
    ],
]);
$e->addBatch([[1, '欧阳娜娜', 'vip'], [2, 'Emma Schmidt', '']]);
$r = $e->finish();
echo "wrote {$r->path} ({$r->records} rows)\n";
