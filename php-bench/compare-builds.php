<?php

/**
 * Which of two or more builds of the extension is faster, on a machine whose speed drifts by more than
 * the difference: the builds take turns, one bench.php round each, so every build runs in every stretch
 * of noise. Prints, per build, the median of its ratios to the bare loop (each ratio from one round)
 * and the median CPU time of the variant's process, then every round's ratio.
 *
 * Usage: php php-bench/compare-builds.php [--rows=800000] [--rounds=10] [--variant=fluxo-csv] [--assoc]
 *            old.so new.so ...
 */

declare(strict_types=1);

$options = getopt('', ['rows:', 'rounds:', 'variant:', 'assoc'], $firstBuild);
$builds = array_slice($argv, $firstBuild);
$usage = 'usage: php php-bench/compare-builds.php [--rows=N] [--rounds=N] [--variant=fluxo-csv] [--assoc] a.so b.so ...';
if ($builds === []) {
    fwrite(STDERR, $usage . "\n");
    exit(2);
}
foreach ($builds as $so) {
    if (!is_file($so)) {
        fwrite(STDERR, "no such file: $so\n$usage\n");
        exit(2);
    }
}
$rows = (int) ($options['rows'] ?? 800000);
$rounds = max(1, (int) ($options['rounds'] ?? 10));
$variant = (string) ($options['variant'] ?? 'fluxo-csv');
$assoc = isset($options['assoc']) ? ['--assoc'] : [];

/** One bench.php round of the bare loop and $variant on build $so: [ratio to the bare loop, cpu s]. */
$runRound = static function (string $so) use ($rows, $variant, $assoc): array {
    $command = [
        PHP_BINARY, '-d', "extension=$so", __DIR__ . '/bench.php', (string) $rows,
        "--only=bare,$variant", '--repeat=1', '--json', ...$assoc,
    ];
    // bench.php loads FLUXO_SO in its children when it is set: this build, not one from the caller's env.
    $proc = proc_open($command, [1 => ['pipe', 'w'], 2 => STDERR], $pipes, null, ['FLUXO_SO' => $so] + getenv());
    $out = (string) stream_get_contents($pipes[1]);
    fclose($pipes[1]);
    $code = proc_close($proc);
    $result = array_column(json_decode($out, true)['results'] ?? [], null, 'variant')[$variant] ?? [];
    if ($code !== 0 || !isset($result['x_bare'], $result['cpu_s'])) {
        fwrite(STDERR, "$so: bench.php failed (exit code $code): " . trim($out) . "\n");
        exit(1);
    }
    return [(float) $result['x_bare'], (float) $result['cpu_s']];
};

$median = static function (array $values): float {
    sort($values);
    return $values[intdiv(count($values) - 1, 2)];
};

$ratios = $cpu = array_fill_keys($builds, []);
for ($round = 0; $round < $rounds; $round++) {
    foreach ($builds as $so) {
        [$ratios[$so][], $cpu[$so][]] = $runRound($so);
    }
}

printf("%s rows, %s, %d rounds, the builds taking turns\n\n", number_format($rows), $variant, $rounds);
$width = max(5, ...array_map('strlen', $builds));
printf("%-{$width}s  %7s  %6s  %s\n", 'build', 'x bare', 'cpu s', 'x bare per round');
foreach ($builds as $so) {
    $each = implode(' ', array_map(static fn (float $r): string => sprintf('%.2f', $r), $ratios[$so]));
    printf("%-{$width}s  %7.2f  %6.2f  %s\n", $so, $median($ratios[$so]), $median($cpu[$so]), $each);
}
