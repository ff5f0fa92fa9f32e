<?php

// A gzip-compressed CSV: orders.csv.gz.
declare(strict_types=1);

$e = new Fluxo\Exporter(['filename' => 'orders.csv', 'columns' => ['n', 'text'], 'csv' => ['compression' => 'gzip']]);
for ($i = 0; $i < 10; $i++) {
    $e->addBatch(array_map(static fn (int $n): array => [$n, str_repeat('x', 50)], range($i * 1000, $i * 1000 + 999)));
}
$r = $e->finish();
echo "wrote {$r->path} ({$r->records} rows, {$r->bytes} bytes)\n";
