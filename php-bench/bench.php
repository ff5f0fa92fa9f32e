<?php

/**
 * Fluxo Export benchmark: the same PHP row loop into different sinks, each variant in its own process.
 *
 * Usage: php -d extension=/path/to/libfluxo.so php-bench/bench.php [rows=800000] [--json] [--only=bare,fluxo-xlsx]
 *        [--repeat=N] [--assoc]
 *
 * --assoc builds every row with string keys (the column names), as PDO::FETCH_ASSOC and most query
 * builders return rows, instead of as a list.
 *
 * --repeat=N runs every variant N times, round by round, and shows each variant's median run; its
 * "x bare" is the median of its ratios to the bare loop of the same round (the machines are shared
 * and noisy: a ratio within one round cancels most of the drift).
 *
 * Each variant runs in a child process (PHP_BINARY with this process's own -d/-c/-n options, FLUXO_SO in
 * its environment) so that peak RSS (VmHWM) belongs to that variant alone. The child prints one JSON
 * object: {variant, seconds, rows, peak_rss_mb, bytes, cpu_s, php_thread_cpu_s, finish_s}. Time covers
 * producing every row and, for the writers, closing the file (finish() returns when the file is
 * complete). cpu_s is the whole process's CPU time, php_thread_cpu_s the PHP thread's; the difference
 * is what Fluxo's own threads did, and finish_s (the wait in finish()) is the part of it PHP did not
 * overlap with producing rows. Output files are removed after the clocks stop.
 */

declare(strict_types=1);

const CHUNK = 1000;
const VARIANTS = ['bare', 'fputcsv', 'fluxo-csv', 'fluxo-xlsx', 'fluxo-csv-s3', 'fluxo-xlsx-s3', 'xlswriter'];
const HEADER = ['id', 'order_no', 'qty', 'price', 'discount', 'sku', 'city', 'created', 'active', 'note'];

/** The workload: identical in every variant. Yields lists of CHUNK rows of 10 mixed cells. */
$chunks = static function (int $rows, bool $assoc): Generator {
    $cities = ['Shanghai', 'Beijing', 'Hangzhou', 'Shenzhen', '成都', 'Berlin', 'São Paulo', 'Austin'];
    $dates = [];
    for ($d = 0; $d < 365; $d++) {
        $dates[] = gmdate('Y-m-d', 1767225600 + $d * 86400);
    }
    for ($start = 0; $start < $rows; $start += CHUNK) {
        $chunk = [];
        $end = min($rows, $start + CHUNK);
        for ($i = $start; $i < $end; $i++) {
            // Two literals, not one row turned into the other: that would be
            // part of the baseline's cost.
            $chunk[] = $assoc ? [
                'id' => $i + 1,
                'order_no' => (string) (202601010000000000 + $i * 7),
                'qty' => $i % 97 + 1,
                'price' => ($i % 100000) / 100 + 0.99,
                'discount' => ($i % 7) * 0.05,
                'sku' => 'SKU-' . ($i % 5000),
                'city' => $cities[$i % 8],
                'created' => $dates[$i % 365],
                'active' => $i % 3 !== 0,
                'note' => $i % 5 === 0 ? null : 'n' . ($i % 13),
            ] : [
                $i + 1,
                (string) (202601010000000000 + $i * 7),
                $i % 97 + 1,
                ($i % 100000) / 100 + 0.99,
                ($i % 7) * 0.05,
                'SKU-' . ($i % 5000),
                $cities[$i % 8],
                $dates[$i % 365],
                $i % 3 !== 0,
                $i % 5 === 0 ? null : 'n' . ($i % 13),
            ];
        }
        yield $chunk;
    }
};

$columns = [
    ['name' => 'id', 'type' => 'int'],
    ['name' => 'order_no', 'type' => 'string'],
    ['name' => 'qty', 'type' => 'int'],
    ['name' => 'price', 'type' => 'number'],
    ['name' => 'discount', 'type' => 'number'],
    ['name' => 'sku', 'type' => 'string'],
    ['name' => 'city', 'type' => 'string'],
    ['name' => 'created', 'type' => 'date'],
    ['name' => 'active', 'type' => 'bool'],
    'note',
];

/** Runs one variant in this process; returns [rows, output bytes, output file or null]. */
$runVariant = static function (string $variant, int $rows, bool $assoc) use ($chunks, $columns): array {
    switch ($variant) {
        case 'bare':
            $n = 0;
            foreach ($chunks($rows, $assoc) as $chunk) {
                $n += count($chunk);
            }
            return [$n, 0, null];
        case 'fputcsv':
            $file = tempnam(sys_get_temp_dir(), 'bench-csv-');
            $fh = fopen($file, 'wb');
            fputcsv($fh, HEADER);
            $n = 0;
            foreach ($chunks($rows, $assoc) as $chunk) {
                foreach ($chunk as $row) {
                    fputcsv($fh, $row);
                }
                $n += count($chunk);
            }
            fclose($fh);
            return [$n, filesize($file), $file];
        case 'fluxo-csv':
        case 'fluxo-xlsx':
        case 'fluxo-csv-s3':
        case 'fluxo-xlsx-s3':
            // Time to a URL: for -s3 that includes the upload and signing.
            $exporter = new Fluxo\Exporter([
                'format' => explode('-', $variant)[1],
                'storage' => str_ends_with($variant, '-s3') ? 's3' : 'local',
                'columns' => $columns,
                'total_rows' => $rows,
            ]);
            foreach ($chunks($rows, $assoc) as $chunk) {
                $exporter->addBatch($chunk);
            }
            $finishStart = hrtime(true);
            $result = $exporter->finish();
            $GLOBALS['finishSeconds'] = (hrtime(true) - $finishStart) / 1e9;
            return [$result->records, $result->bytes, $result->path];
        case 'xlswriter':
            $dir = sys_get_temp_dir();
            $excel = new Vtiful\Kernel\Excel(['path' => $dir]);
            $excel->constMemory('bench-xlswriter-' . getmypid() . '.xlsx', 'Sheet1', false)->header(HEADER);
            $n = 0;
            foreach ($chunks($rows, $assoc) as $chunk) {
                $excel->data($chunk);
                $n += count($chunk);
            }
            $file = $excel->output();
            return [$n, filesize($file), $file];
    }
    throw new InvalidArgumentException("unknown variant $variant");
};

/** CPU seconds (user + system) of the whole process, and of its PHP thread alone. */
$cpuSeconds = static function (): array {
    $ticks = static function (string $statFile): float {
        $stat = (string) @file_get_contents($statFile);
        $fields = explode(' ', substr($stat, (int) strrpos($stat, ')') + 2));
        return ((int) ($fields[11] ?? 0) + (int) ($fields[12] ?? 0)) / 100; // USER_HZ is 100 on Linux
    };
    return [$ticks('/proc/self/stat'), $ticks('/proc/self/task/' . getmypid() . '/stat')];
};

$peakRssMb = static function (): float {
    preg_match('/^VmHWM:\s+(\d+) kB/m', (string) file_get_contents('/proc/self/status'), $m);
    return isset($m[1]) ? (int) $m[1] / 1024 : -1.0;
};

/** Child command: PHP_BINARY with this process's interpreter options; fluxo loaded from $so if known. */
$childCommand = static function (string $variant, int $rows, bool $assoc, ?string $so): array {
    $cmdline = explode("\0", rtrim((string) @file_get_contents('/proc/self/cmdline'), "\0"));
    $options = array_slice($cmdline, 1, max(0, count($cmdline) - 1 - count($_SERVER['argv'])));
    $kept = [];
    for ($i = 0; $i < count($options); $i++) {
        $value = $options[$i] === '-d' ? ($options[$i + 1] ?? '') : preg_replace('/^-d/', '', $options[$i]);
        $extension = preg_match('/^extension\s*=\s*(.*)$/', $value, $m) ? $m[1] : null;
        if (str_starts_with($options[$i], '-d') && $extension !== null && (str_contains($extension, 'fluxo') || $extension === $so)) {
            $i += $options[$i] === '-d' ? 1 : 0; // replaced by FLUXO_SO below
            continue;
        }
        $kept[] = $options[$i];
    }
    if ($so !== null) {
        $kept[] = '-d';
        $kept[] = "extension=$so";
    }
    return [PHP_BINARY, ...$kept, __FILE__, '--child=' . $variant, (string) $rows, ...($assoc ? ['--assoc'] : [])];
};

/** Path of the loaded fluxo .so: FLUXO_SO, else the mapped library file. */
$fluxoSo = static function (): ?string {
    $so = getenv('FLUXO_SO');
    if (is_string($so) && $so !== '') {
        return $so;
    }
    preg_match('#\s(/\S*fluxo\S*\.so)$#m', (string) @file_get_contents('/proc/self/maps'), $m);
    return $m[1] ?? null;
};

// ---- child: run one variant, print its JSON line ----
$args = array_slice($argv, 1);
$child = preg_grep('/^--child=/', $args);
$rows = (int) (array_values(preg_grep('/^\d+$/', $args))[0] ?? 800000);
$assoc = in_array('--assoc', $args, true);
if ($child) {
    $variant = substr(reset($child), 8);
    $t0 = hrtime(true);
    [$done, $bytes, $file] = $runVariant($variant, $rows, $assoc);
    $seconds = (hrtime(true) - $t0) / 1e9;
    [$cpu, $phpThreadCpu] = $cpuSeconds();
    // Deleting the output is not part of writing it: done once the clocks are read.
    if ($file !== null) {
        unlink($file);
        if (str_starts_with($variant, 'fluxo')) {
            @rmdir(dirname($file));
        }
    }
    echo json_encode([
        'variant' => $variant,
        'seconds' => round($seconds, 4),
        'rows' => $done,
        'peak_rss_mb' => round($peakRssMb(), 1),
        'bytes' => $bytes,
        'cpu_s' => $cpu,
        'php_thread_cpu_s' => $phpThreadCpu,
        'finish_s' => round($GLOBALS['finishSeconds'] ?? 0.0, 4),
    ]), "\n";
    exit($done === $rows ? 0 : 1);
}

// ---- parent: run each variant in a fresh process, then report ----
$so = $fluxoSo();
$env = $so !== null ? ['FLUXO_SO' => $so] + getenv() : getenv();
$only = preg_grep('/^--only=/', $args);
$variants = $only ? array_intersect(VARIANTS, explode(',', substr(reset($only), 7))) : VARIANTS;
$repeat = max(1, (int) substr((string) (array_values(preg_grep('/^--repeat=\d+$/', $args))[0] ?? '--repeat=1'), 9));

/** Runs one variant in a fresh child process; returns its JSON result, or why it did not run. */
$runChild = static function (string $variant) use ($rows, $assoc, $so, $env, $childCommand): array {
    $needs = str_starts_with($variant, 'fluxo') ? 'fluxo' : ($variant === 'xlswriter' ? 'xlswriter' : null);
    if ($needs !== null && !extension_loaded($needs)) {
        return ['variant' => $variant, 'skipped' => "$needs not loaded"];
    }
    // The names the extension reads the endpoint from, in its order.
    $s3Endpoint = getenv('FLUXO_S3_ENDPOINT') ?: getenv('S3_ENDPOINT') ?: getenv('AWS_ENDPOINT_URL')
        ?: (string) ini_get('fluxo.s3_endpoint');
    if (str_ends_with($variant, '-s3') && $s3Endpoint === '') {
        return ['variant' => $variant, 'skipped' => 'no S3 store configured (fluxo.s3_* or FLUXO_S3_*, S3_*, AWS_*)'];
    }
    $proc = proc_open($childCommand($variant, $rows, $assoc, $so), [1 => ['pipe', 'w'], 2 => STDERR], $pipes, null, $env);
    $out = stream_get_contents($pipes[1]);
    fclose($pipes[1]);
    $code = proc_close($proc);
    $result = json_decode(trim((string) $out), true);
    if ($code !== 0 || !is_array($result)) {
        return ['variant' => $variant, 'error' => "exit code $code: " . trim((string) $out)];
    }
    return $result;
};

// Rounds run every variant once, in order, so that the machine's drift hits
// them alike; each variant's ratio to the bare loop is taken within a round.
$runs = [];
for ($round = 0; $round < $repeat; $round++) {
    foreach ($variants as $variant) {
        $runs[$variant][$round] = $runChild($variant);
    }
}

$median = static function (array $values): float {
    sort($values);
    $n = count($values);
    return $n % 2 === 1 ? $values[intdiv($n, 2)] : ($values[$n / 2 - 1] + $values[$n / 2]) / 2;
};

/** Per variant: its median run (by wall time), with the median ratio to the bare loop of the same round. */
$results = [];
foreach ($runs as $variant => $rounds) {
    $timed = array_filter($rounds, static fn (array $r): bool => isset($r['seconds']));
    if (count($timed) < count($rounds)) {
        $results[] = array_values(array_diff_key($rounds, $timed))[0];
        continue;
    }
    usort($timed, static fn (array $a, array $b): int => $a['seconds'] <=> $b['seconds']);
    $result = $timed[intdiv(count($timed) - 1, 2)];
    $ratios = [];
    foreach ($rounds as $round => $r) {
        $bare = $runs['bare'][$round]['seconds'] ?? null;
        if ($bare) {
            $ratios[] = $r['seconds'] / $bare;
        }
    }
    $result['x_bare'] = $ratios ? round($median($ratios), 3) : null;
    $result['runs'] = count($rounds);
    $results[] = $result;
}

if (in_array('--json', $args, true)) {
    echo json_encode(['rows' => $rows, 'assoc' => $assoc, 'php' => PHP_VERSION, 'results' => $results], JSON_PRETTY_PRINT), "\n";
    exit(0);
}

printf(
    "%s rows x %d columns (%s), chunks of %d, PHP %s%s\n\n",
    number_format($rows),
    count(HEADER),
    $assoc ? 'string keys' : 'lists',
    CHUNK,
    PHP_VERSION,
    $repeat > 1 ? ", median of $repeat runs (x bare: median of the ratios within each run)" : ''
);
printf(
    "%-14s %9s %12s %9s %12s %14s %8s %8s %9s\n",
    'variant',
    'wall s',
    'rows/s',
    'x bare',
    'peak RSS MB',
    'output bytes',
    'cpu s',
    'PHP cpu',
    'finish s'
);
foreach ($results as $r) {
    if (!isset($r['seconds'])) {
        $why = isset($r['skipped']) ? "skipped ({$r['skipped']})" : "FAILED ({$r['error']})";
        printf("%-14s %s\n", $r['variant'], $why);
        continue;
    }
    printf(
        "%-14s %9.3f %12s %9s %12.1f %14s %8.2f %8.2f %9.3f\n",
        $r['variant'],
        $r['seconds'],
        number_format($r['rows'] / max($r['seconds'], 1e-9)),
        $r['x_bare'] !== null ? sprintf('%.2f', $r['x_bare']) : '-',
        $r['peak_rss_mb'],
        number_format($r['bytes']),
        $r['cpu_s'],
        $r['php_thread_cpu_s'],
        $r['finish_s']
    );
}
