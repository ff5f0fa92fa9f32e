<?php

// Several sheets in one workbook; a sheet past Excel's 1,048,575 data rows
// continues on "Name (2)" by itself, header repeated.
declare(strict_types=1);

$e = new Fluxo\Exporter(['format' => 'xlsx', 'sheet' => 'Orders', 'columns' => ['Order', 'Amount']]);
$e->addBatch([['A-1', 10], ['A-2', 20]]);
$e->sheet('Refunds', ['Order', 'Refunded', 'Reason']);
$e->addBatch([['A-1', 5, 'damaged']]);
$r = $e->finish();
echo "wrote {$r->path} ({$r->records} rows, {$r->sheets} sheets)\n";
