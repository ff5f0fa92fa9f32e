<?php

// One XLSX export of N rows x 10 columns at the php.ini compression level;
// prints the level, wall time and file size. See BENCHMARKS.md.

declare(strict_types=1);

$rows = (int) ($argv[1] ?? 800000);
$start = hrtime(true);
$e = new Fluxo\Exporter(['format' => 'xlsx', 'columns' => ['id', 'n', 'f', 's', 'd', 'b', 'x', 'y', 'z', 'w']]);
for ($i = 0; $i < $rows; $i += 1000) {
    $chunk = [];
    for ($j = $i; $j < $i + 1000; $j++) {
        $chunk[] = [$j, $j * 3, $j / 7, "name$j", '2026-11-29', $j % 2 === 0, 'abc', null, 12345.678, '202611290000000001'];
    }
    $e->addBatch($chunk);
}
$r = $e->finish();
printf("level %s: %.2f s, %d bytes\n", ini_get('fluxo.compression_level'), (hrtime(true) - $start) / 1e9, $r->bytes);
unlink($r->path);
