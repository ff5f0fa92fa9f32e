<?php

declare(strict_types=1);

namespace Fluxo\Tests\Support;

/**
 * Reads an .xlsx file back with an independent reader: php-tests/tools/xlsx_dump.py (openpyxl).
 * The CI installs openpyxl with `pip install openpyxl`.
 */
final class XlsxReader
{
    /**
     * Full dump (small files): see tools/xlsx_dump.py for the shape.
     *
     * @return array{sheetnames: list<string>, sheets: list<array<string, mixed>>}
     */
    public static function dump(string $path): array
    {
        return self::run([$path]);
    }

    /**
     * Sheet names, row counts (header included) and first rows of a large workbook.
     *
     * @return array{sheetnames: list<string>, sheets: list<array<string, mixed>>}
     */
    public static function summary(string $path): array
    {
        return self::run(['--summary', $path]);
    }

    /**
     * @param list<string> $args
     * @return array<string, mixed>
     */
    private static function run(array $args): array
    {
        $cmd = array_merge([Env::$python, Env::$tools . '/xlsx_dump.py'], $args);
        $out = tempnam(Env::scratchDir(), 'xlsx-out-');
        $err = tempnam(Env::scratchDir(), 'xlsx-err-');
        $process = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', $out, 'w'], 2 => ['file', $err, 'w']], $pipes);
        if (!is_resource($process)) {
            throw new \RuntimeException('cannot start ' . implode(' ', $cmd));
        }
        $code = proc_close($process);
        $stdout = (string) file_get_contents($out);
        $stderr = (string) file_get_contents($err);
        @unlink($out);
        @unlink($err);
        if ($code !== 0) {
            $hint = str_contains($stderr, 'openpyxl') ? "\n(install the reader with: pip install openpyxl)" : '';
            throw new \RuntimeException(sprintf(
                "xlsx_dump.py failed (exit %d) on %s%s\n%s",
                $code,
                end($args),
                $hint,
                substr($stderr, -3000)
            ));
        }
        $data = json_decode($stdout, true);
        if (!is_array($data)) {
            throw new \RuntimeException("xlsx_dump.py printed no JSON:\n" . substr($stdout, 0, 2000));
        }
        return $data;
    }
}
