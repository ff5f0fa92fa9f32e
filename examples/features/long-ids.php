<?php

// 18-digit order ids stay exact: no 1.23E+17, no rounding, leading zeros kept.
declare(strict_types=1);

$e = new Fluxo\Exporter([
    'format' => 'xlsx',
    'filename' => 'long-ids.xlsx',
    'columns' => [
        'Order ID',                                   // auto: an int beyond 15 digits is written as text
        ['name' => 'Account', 'type' => 'string'],    // string: whatever arrives is kept as text
        ['name' => 'Amount', 'type' => 'number', 'format' => '#,##0.00'],
    ],
]);
$e->addBatch([
    [202611290000000001, '0012345', 1234.5],
    [202611290000000002, 98765, 99.99],
]);
$r = $e->finish();
echo "wrote {$r->path} ({$r->records} rows)\n";
