<?php

// DateTimeInterface values and date strings become real Excel dates; 'timezone' says
// where date objects are shown; CSV writes them with PHP date() patterns.
declare(strict_types=1);

$rows = [
    [new DateTimeImmutable('2026-11-29 02:30:00', new DateTimeZone('UTC')), '2026-11-29', '08:15:00'],
    ['2026-11-29T10:20:30+08:00', '2026-12-01 00:00:00', '23:59:59'],
];
$columns = [
    ['name' => 'Paid at', 'type' => 'datetime'],                       // default yyyy-mm-dd hh:mm:ss
    ['name' => 'Ships on', 'type' => 'date', 'format' => 'dd/mm/yyyy'], // your own Excel format
    ['name' => 'Slot', 'type' => 'time'],
];
$xlsx = new Fluxo\Exporter(['format' => 'xlsx', 'columns' => $columns, 'timezone' => 'Asia/Shanghai']);
$xlsx->addBatch($rows);
$r = $xlsx->finish();
echo "wrote {$r->path} ({$r->records} rows)\n";

$csv = new Fluxo\Exporter([
    'columns' => $columns,
    'timezone' => 'Asia/Shanghai',
    'csv' => ['datetime_format' => 'Y/m/d H:i', 'date_format' => 'd.m.Y'],
]);
$csv->addBatch($rows);
$r = $csv->finish();
echo "wrote {$r->path} ({$r->records} rows)\n";
