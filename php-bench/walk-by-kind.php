<?php

/**
 * What addBatch() costs the PHP thread per cell, by kind of cell: for each kind, rows of 10 cells of
 * that kind only, built in memory first, then handed over 4 times; the best of 3 exports is shown.
 * fluxo.buffer_size is raised so that addBatch() never waits for the writer: the figure is the walk
 * alone (reading the zvals, converting, copying into the batch arena).
 *
 * Usage: php -d extension=/path/to/libfluxo.so php-bench/walk-by-kind.php [rows=100000]
 */

declare(strict_types=1);

ini_set('fluxo.buffer_size', (string) (1 << 34));
$rows = (int) ($argv[1] ?? 100000);

/** kind => [column type, the value of row $n] */
$kinds = [
    'null' => ['string', static fn (int $n): mixed => null],
    'bool' => ['bool', static fn (int $n): bool => $n % 2 === 0],
    'int' => ['int', static fn (int $n): int => $n],
    'float' => ['number', static fn (int $n): float => $n / 7],
    'short text' => ['string', static fn (int $n): string => "name$n"],
    '18-digit id' => ['string', static fn (int $n): string => (string) (202601010000000000 + $n)],
    'Y-m-d date' => ['date', static fn (int $n): string => '2026-11-29'],
    // As MySQL returns DATETIME columns.
    'Y-m-d H:i:s' => ['datetime', static fn (int $n): string => sprintf('2026-11-29 %02d:%02d:%02d', intdiv($n, 3600) % 24, intdiv($n, 60) % 60, $n % 60)],
    // As PDO returns DECIMAL columns (and, with some drivers, every column): text.
    'int as text' => ['int', static fn (int $n): string => (string) $n],
    'decimal text' => ['number', static fn (int $n): string => sprintf('%d.%02d', intdiv($n, 100), $n % 100)],
];

foreach ($kinds as $kind => [$type, $value]) {
    $chunks = [];
    for ($start = 0; $start < $rows; $start += 1000) {
        $chunk = [];
        for ($n = $start; $n < min($rows, $start + 1000); $n++) {
            $chunk[] = array_fill(0, 10, $value($n));
        }
        $chunks[] = $chunk;
    }
    $columns = array_map(static fn (int $i): array => ['name' => "c$i", 'type' => $type], range(0, 9));
    $best = INF;
    for ($round = 0; $round < 3; $round++) {
        $exporter = new Fluxo\Exporter(['format' => 'csv', 'columns' => $columns]);
        $inAddBatch = 0;
        for ($pass = 0; $pass < 4; $pass++) {
            foreach ($chunks as $chunk) {
                $t = hrtime(true);
                $exporter->addBatch($chunk);
                $inAddBatch += hrtime(true) - $t;
            }
        }
        unlink($exporter->finish()->path);
        $best = min($best, $inAddBatch);
    }
    printf("%-12s %6.1f ns per cell\n", $kind, $best / (4 * $rows * 10));
}
