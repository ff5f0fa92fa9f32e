<?php

/**
 * Fluxo Export demo: export order data the way an application reading a database would.
 *
 * Usage:
 *   php -d extension=/path/to/libfluxo.so -d fluxo.local_dir=$PWD/exports \
 *       examples/demo.php [rows=1000000] [csv|xlsx]
 *
 * Rows are fetched in batches of 1,000 (as from a paged SQL query) and handed to the exporter with
 * addBatch(). While PHP produces rows, and after finishAsync() while the writer drains its queue, the
 * progress bar on STDERR is redrawn from Fluxo\Exporter::status() every 100 ms — the figures are the
 * ones the extension reports (rows written to the file), not the rows PHP has handed over.
 */

declare(strict_types=1);

const BATCH_SIZE = 1000;
const REDRAW_NS = 100_000_000;
const FINAL_STATES = ['COMPLETED', 'FAILED', 'CANCELLED'];

$total = (int) ($argv[1] ?? 1_000_000);
$format = strtolower($argv[2] ?? 'csv');
if ($total < 0 || !in_array($format, ['csv', 'xlsx'], true)) {
    fwrite(STDERR, "usage: php examples/demo.php [rows=1000000] [csv|xlsx]\n");
    exit(2);
}
if (!extension_loaded('fluxo')) {
    fwrite(STDERR, "the fluxo extension is not loaded (php -d extension=/path/to/libfluxo.so ...)\n");
    exit(1);
}

/**
 * Stand-in for "SELECT ... FROM orders WHERE id > ? ORDER BY id LIMIT 1000": yields lists of
 * associative rows, the shape PDO::fetchAll(PDO::FETCH_ASSOC) returns.
 */
$fetchOrders = static function (int $total, int $batchSize): Generator {
    $customers = [
        ['张伟', 'zhang.wei'], ['王芳', 'wang.fang'], ['李娜', 'li.na'], ['刘洋', 'liu.yang'],
        ['陈静', 'chen.jing'], ['欧阳娜娜', 'ouyang.nana'], ['Emma Schmidt', 'emma.schmidt'],
        ['Liam O\'Brien', 'liam.obrien'], ['Sato, Yuki', 'yuki.sato'], ['José "Pepe" Álvarez', 'jose.alvarez'],
    ];
    $utc = new DateTimeZone('UTC');
    $base = (new DateTimeImmutable('2026-11-01 00:00:00', $utc))->getTimestamp();
    mt_srand(20261129);
    for ($offset = 0; $offset < $total; $offset += $batchSize) {
        $rows = [];
        $end = min($total, $offset + $batchSize);
        for ($i = $offset; $i < $end; $i++) {
            [$name, $mailbox] = $customers[mt_rand(0, count($customers) - 1)];
            $paid = mt_rand(0, 9) !== 0;
            $ts = $base + intdiv($i * 7, 3) + mt_rand(0, 59);
            $paidAt = null;
            if ($paid) {
                // Some drivers hand back DateTime objects, others plain strings: both are accepted.
                $paidAt = $i % 3 === 0
                    ? (new DateTimeImmutable('@' . $ts))->setTimezone($utc)
                    : gmdate('Y-m-d H:i:s', $ts);
            }
            $rows[] = [
                'order_id' => '20261101' . str_pad((string) ($i + 1), 10, '0', STR_PAD_LEFT), // 18 digits
                'customer' => $name,
                'amount' => mt_rand(100, 999_999_99) / 100,
                'paid_at' => $paidAt,
                'is_paid' => $paid,
                'email' => $mailbox . ($i % 997) . '@example.com',
            ];
        }
        yield $rows;
    }
};

$drawBar = static function (?Fluxo\TaskStatus $status, int $total, int $startNs, int $handedOver): void {
    $width = 30;
    $seconds = max(1e-9, (hrtime(true) - $startNs) / 1e9);
    $state = $status->state ?? 'UNKNOWN';
    $records = $status->records ?? 0;
    $percent = $status->progress ?? 0;
    $filled = intdiv($width * $percent, 100);
    $line = sprintf(
        "\r[%s%s] %3d%%  %s / %s rows written  %s rows/s  (%s handed over)  %s  %.1f s",
        str_repeat('#', $filled),
        str_repeat('.', $width - $filled),
        $percent,
        number_format($records),
        number_format($total),
        number_format($records / $seconds),
        number_format($handedOver),
        $state,
        $seconds
    );
    fwrite(STDERR, str_pad($line, 130));
};

try {
    $exporter = new Fluxo\Exporter([
        'format' => $format,
        'filename' => "orders-2026-11.$format",
        'sheet' => 'Orders',
        'columns' => [
            ['name' => 'Order ID', 'type' => 'string', 'key' => 'order_id'],
            ['name' => 'Customer', 'key' => 'customer'],
            ['name' => 'Amount', 'type' => 'number', 'key' => 'amount', 'format' => '#,##0.00'],
            ['name' => 'Paid at', 'type' => 'datetime', 'key' => 'paid_at'],
            ['name' => 'Paid', 'type' => 'bool', 'key' => 'is_paid'],
            ['name' => 'E-mail', 'key' => 'email'],
        ],
        'total_rows' => $total,
        'csv' => ['bom' => true],
    ]);
    $taskId = $exporter->taskId();
    fwrite(STDERR, "task $taskId: exporting " . number_format($total) . " rows as $format\n");

    $startNs = hrtime(true);
    $lastDraw = 0;
    $handedOver = 0;
    foreach ($fetchOrders($total, BATCH_SIZE) as $batch) {
        $handedOver = $exporter->addBatch($batch);
        if (hrtime(true) - $lastDraw >= REDRAW_NS) {
            $drawBar(Fluxo\Exporter::status($taskId), $total, $startNs, $handedOver);
            $lastDraw = hrtime(true);
        }
    }

    // All rows are handed over; let the writer finish in the background and watch it.
    $exporter->finishAsync();
    do {
        $status = Fluxo\Exporter::status($taskId);
        $drawBar($status, $total, $startNs, $handedOver);
        if ($status !== null && in_array($status->state, FINAL_STATES, true)) {
            break;
        }
        usleep(REDRAW_NS / 1000);
    } while (true);
    fwrite(STDERR, "\n");
    $seconds = (hrtime(true) - $startNs) / 1e9;

    if ($status->state !== 'COMPLETED') {
        throw new Fluxo\ExportException("export $taskId ended $status->state: " . ($status->error ?? 'no error given'));
    }
} catch (Fluxo\ExportException $e) {
    fwrite(STDERR, "\nexport failed: " . $e->getMessage() . "\n");
    exit(1);
}

// TaskStatus carries the file's location and size; the checksum is taken here from the file itself.
printf("path:     %s\n", $status->path);
printf("url:      %s\n", $status->url);
printf("records:  %s\n", number_format($status->records));
printf("bytes:    %s\n", number_format($status->bytes));
printf("sha256:   %s\n", hash_file('sha256', $status->path));
printf("duration: %.2f s (%s rows/s)\n", $seconds, number_format($status->records / max($seconds, 1e-9)));
