<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * The benchmark scripts run (tiny sizes) so they never rot. No timing is
 * asserted: figures come from real runs, recorded in BENCHMARKS.md.
 */
final class BenchScriptsTest extends FluxoTestCase
{
    /**
     * @return array{int, string, string}
     */
    private function runScript(string $script, array $args): array
    {
        $cmd = ChildPhp::command(dirname(__DIR__) . '/php-bench/' . $script, $args);
        $env = ['FLUXO_SO' => getenv('FLUXO_SO') ?: ''] + getenv();
        $result = ChildPhp::runCommand($cmd, $env);
        return [$result->exitCode, $result->stdout, $result->stderr];
    }

    public function testEndToEndBenchRunsEveryVariant(): void
    {
        [$code, $out, $err] = $this->runScript('bench.php', ['2000', '--json', '--repeat=2']);
        self::assertSame(0, $code, $out . $err);
        $report = json_decode($out, true);
        self::assertIsArray($report, $out);
        $byName = array_column($report['results'], null, 'variant');
        foreach (['bare', 'fputcsv', 'fluxo-csv', 'fluxo-xlsx'] as $variant) {
            self::assertSame(2000, $byName[$variant]['rows'] ?? null, "{$variant}: " . json_encode($byName[$variant] ?? null));
            self::assertGreaterThan(0, $byName[$variant]['peak_rss_mb']);
            self::assertSame(2, $byName[$variant]['runs'], "{$variant} ran in both rounds");
            self::assertGreaterThan(0, $byName[$variant]['x_bare']);
        }
        self::assertEquals(1, $byName['bare']['x_bare'], 'the bare loop is its own baseline');
    }

    public function testAssocRowsWriteWhatListsWrite(): void
    {
        $bytes = [];
        foreach ([[], ['--assoc']] as $shape) {
            [$code, $out, $err] = $this->runScript('bench.php', ['2000', '--json', '--only=bare,fputcsv,fluxo-csv', ...$shape]);
            self::assertSame(0, $code, $out . $err);
            $report = json_decode($out, true);
            self::assertSame($shape !== [], $report['assoc'] ?? null);
            $bytes[] = array_column($report['results'], 'bytes', 'variant');
        }
        self::assertGreaterThan(0, $bytes[0]['fluxo-csv']);
        self::assertSame($bytes[0], $bytes[1], 'the same cells, found by key');
    }

    public function testCompareBuildsRunsEachBuildInEachRound(): void
    {
        $so = (string) getenv('FLUXO_SO');
        // The same build under two paths, one without "fluxo" in it: bench.php must load it once.
        $copy = sys_get_temp_dir() . '/compare-builds-' . getmypid() . '.so';
        self::assertTrue(copy($so, $copy));
        try {
            [$code, $out, $err] = $this->runScript('compare-builds.php', ['--rows=2000', '--rounds=2', $so, $copy]);
        } finally {
            unlink($copy);
        }
        self::assertSame(0, $code, $out . $err);
        self::assertStringNotContainsString('already loaded', $err);
        foreach ([$so, $copy] as $build) {
            self::assertMatchesRegularExpression('/^' . preg_quote($build, '/') . ' +\d+\.\d\d +\d+\.\d\d +\d+\.\d\d \d+\.\d\d$/m', $out);
        }
        [$code, , $err] = $this->runScript('compare-builds.php', []);
        self::assertSame(2, $code, 'no build given');
        self::assertStringContainsString('usage:', $err);
    }

    public function testWalkByKindBenchRuns(): void
    {
        [$code, $out, $err] = $this->runScript('walk-by-kind.php', ['2000']);
        self::assertSame(0, $code, $out . $err);
        $kinds = ['null', 'bool', 'int', 'float', 'short text', '18-digit id', 'Y-m-d date', 'int as text', 'decimal text'];
        foreach ($kinds as $kind) {
            self::assertMatchesRegularExpression('/^' . preg_quote($kind, '/') . ' +\d+\.\d ns per cell$/m', $out);
        }
    }

    public function testAddBatchBenchRuns(): void
    {
        [$code, $out, $err] = $this->runScript('add-batch.php', []);
        self::assertSame(0, $code, $out . $err);
        self::assertMatchesRegularExpression('/^800000 rows: addBatch [\d.]+ s \([\d.]+ us\/cell\), to a finished CSV [\d.]+ s$/m', $out);
        self::assertMatchesRegularExpression('/^addRow: \d+ ns per row$/m', $out);
    }

    public function testRepeatedExportsBenchRuns(): void
    {
        [$code, $out, $err] = $this->runScript('repeated-exports.php', ['4', 'xlsx']);
        self::assertSame(0, $code, $out . $err);
        self::assertSame(4, preg_match_all('/^\d exports: RSS [\d.]+ MB$/m', $out), $out);
    }

    public function testCompressionBenchRuns(): void
    {
        [$code, $out, $err] = $this->runScript('compression.php', ['2000']);
        self::assertSame(0, $code, $out . $err);
        self::assertMatchesRegularExpression('/^level \d: [\d.]+ s, \d+ bytes$/m', $out);
    }
}
