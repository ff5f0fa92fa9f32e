<?php

// What many exports leave in one long-lived process (a PHP-FPM worker):
// N exports of 10,000 rows, one after another, with the process's RSS
// printed every tenth of the way. A flat line means nothing is kept.
//
//   php -d extension=$SO php-bench/repeated-exports.php 300 csv
//   php -d extension=$SO php-bench/repeated-exports.php 200 csv s3   # with FLUXO_S3_* set

declare(strict_types=1);

$exports = max(1, (int) ($argv[1] ?? 300));
$format = $argv[2] ?? 'csv';
$storage = $argv[3] ?? 'local';
$rss = static function (): float {
    preg_match('/VmRSS:\s+(\d+)/', (string) file_get_contents('/proc/self/status'), $m);
    return (int) $m[1] / 1024;
};
$columns = ['id', 'name', ['name' => 'amount', 'type' => 'number'], ['name' => 'day', 'type' => 'date']];
$step = max(1, intdiv($exports, 10));
for ($n = 1; $n <= $exports; $n++) {
    $e = new Fluxo\Exporter(['format' => $format, 'storage' => $storage, 'columns' => $columns]);
    for ($b = 0; $b < 10; $b++) {
        $rows = [];
        for ($i = $b * 1000; $i < ($b + 1) * 1000; $i++) {
            $rows[] = [$i, "名称 {$i}", $i * 0.5, '2026-11-29'];
        }
        $e->addBatch($rows);
    }
    $r = $e->finish();
    if ($r->path !== null) {
        unlink($r->path);
    }
    if ($n % $step === 0) {
        printf("%d exports: RSS %.1f MB\n", $n, $rss());
    }
}
