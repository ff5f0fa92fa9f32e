<?php

declare(strict_types=1);

namespace Fluxo\Tests\Support;

/**
 * Per-run settings filled in by php-tests/bootstrap.php.
 */
final class Env
{
    /** Fresh temp dir of this run (everything below is removed at the end). */
    public static string $root = '';

    /** Value of fluxo.local_dir for this run. */
    public static string $localDir = '';

    /** Value of fluxo.work_dir for this run (status files live in {workDir}/tasks). */
    public static string $workDir = '';

    /** Absolute path of libfluxo.so, passed to child processes. */
    public static string $so = '';

    /** Python interpreter used for the independent XLSX reader. */
    public static string $python = 'python3';

    /** php-tests/tools */
    public static string $tools = '';

    public static function scratchDir(): string
    {
        $dir = self::$root . '/scratch';
        if (!is_dir($dir)) {
            mkdir($dir, 0777, true);
        }
        return $dir;
    }

    public static function removeTree(string $dir): void
    {
        if (!is_dir($dir) || is_link($dir)) {
            if (file_exists($dir) || is_link($dir)) {
                @unlink($dir);
            }
            return;
        }
        $items = new \RecursiveIteratorIterator(
            new \RecursiveDirectoryIterator($dir, \FilesystemIterator::SKIP_DOTS),
            \RecursiveIteratorIterator::CHILD_FIRST
        );
        foreach ($items as $item) {
            /** @var \SplFileInfo $item */
            if ($item->isDir() && !$item->isLink()) {
                @rmdir($item->getPathname());
            } else {
                @unlink($item->getPathname());
            }
        }
        @rmdir($dir);
    }
}
