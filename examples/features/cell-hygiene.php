<?php

// Bad text never corrupts a file: control characters are escaped in XLSX,
// invalid UTF-8 and over-long cells are errors unless you choose otherwise.
declare(strict_types=1);

$e = new Fluxo\Exporter([
    'format' => 'xlsx',
    'columns' => ['text'],
    'invalid_utf8' => 'replace',    // default 'error'
    'long_text' => 'truncate',      // default 'error': Excel holds 32,767 characters
]);
$e->addBatch([["bell\x07 and tab\t"], ["latin-1 caf\xe9"], [str_repeat('x', 40000)]]);
$r = $e->finish();
echo "wrote {$r->path} ({$r->records} rows)\n";

try {
    (new Fluxo\Exporter(['columns' => ['text']]))->addRow(["caf\xe9"]);
} catch (Fluxo\InvalidRowException $x) {
    echo 'rejected: ', $x->getMessage(), "\n";
}
