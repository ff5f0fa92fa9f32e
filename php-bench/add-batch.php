<?php

// Cost of addBatch() on the PHP thread: 800,000 rows x 10 cells prepared in
// memory first, so only the copy into Fluxo (and any back-pressure wait) is timed.
// Then the same for addRow(), one call per row, over the first 100,000 rows.

declare(strict_types=1);

$chunks = [];
for ($i = 0; $i < 100; $i++) {
    $chunk = [];
    for ($j = 0; $j < 1000; $j++) {
        $n = $i * 1000 + $j;
        $chunk[] = [$n, $n * 3, $n / 7, "name$n", '2026-11-29', $n % 2 === 0, 'abc', null, 12345.678, '202611290000000001'];
    }
    $chunks[] = $chunk;
}
$rows = 8 * count($chunks) * 1000;
$e = new Fluxo\Exporter(['columns' => ['id', 'n', 'f', 's', 'd', 'b', 'x', 'y', 'z', 'w']]);
$inAdd = 0;
$start = hrtime(true);
for ($k = 0; $k < 8; $k++) {
    foreach ($chunks as $chunk) {
        $t = hrtime(true);
        $e->addBatch($chunk);
        $inAdd += hrtime(true) - $t;
    }
}
$r = $e->finish();
printf(
    "%d rows: addBatch %.3f s (%.3f us/cell), to a finished CSV %.3f s\n",
    $rows,
    $inAdd / 1e9,
    $inAdd / 1e3 / ($rows * 10),
    (hrtime(true) - $start) / 1e9
);
unlink($r->path);

$e = new Fluxo\Exporter(['columns' => ['id', 'n', 'f', 's', 'd', 'b', 'x', 'y', 'z', 'w']]);
$start = hrtime(true);
foreach ($chunks as $chunk) {
    foreach ($chunk as $row) {
        $e->addRow($row);
    }
}
$perRow = (hrtime(true) - $start) / (count($chunks) * 1000);
unlink($e->finish()->path);
printf("addRow: %.0f ns per row\n", $perRow);
