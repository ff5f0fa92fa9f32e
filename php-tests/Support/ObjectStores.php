<?php

declare(strict_types=1);

namespace Fluxo\Tests\Support;

/**
 * The object-storage test servers started by scripts/test-servers.sh, read from the
 * FLUXO_TEST_* environment (`eval "$(scripts/test-servers.sh env)"`):
 * s3s-fs (real SigV4 checks) and moto_server (the OSS protocol path, no signature checks).
 */
final class ObjectStores
{
    /**
     * Environment names the extension reads for storage settings. They rank above
     * php.ini, so the storage tests remove them for their run (clearEnvironment()).
     */
    public const SETTING_ENV_NAMES = [
        'OSS_ENDPOINT', 'OSS_BUCKET', 'OSS_REGION', 'OSS_ACCESS_KEY_ID', 'OSS_ACCESS_KEY_SECRET', 'OSS_SECURITY_TOKEN',
        'S3_ENDPOINT', 'AWS_ENDPOINT_URL', 'S3_BUCKET', 'S3_REGION', 'AWS_REGION', 'AWS_DEFAULT_REGION',
        'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN',
        'FLUXO_STORAGE', 'FLUXO_KEY_PREFIX', 'FLUXO_LOG_LEVEL', 'FLUXO_LOG_FILE',
        'FLUXO_OSS_ENDPOINT', 'FLUXO_OSS_BUCKET', 'FLUXO_OSS_REGION', 'FLUXO_OSS_ACCESS_KEY_ID',
        'FLUXO_OSS_ACCESS_KEY_SECRET', 'FLUXO_OSS_SECURITY_TOKEN', 'FLUXO_OSS_DOWNLOAD_DOMAIN',
        'FLUXO_S3_ENDPOINT', 'FLUXO_S3_BUCKET', 'FLUXO_S3_REGION', 'FLUXO_S3_ACCESS_KEY_ID',
        'FLUXO_S3_SECRET_ACCESS_KEY', 'FLUXO_S3_SESSION_TOKEN', 'FLUXO_S3_VIRTUAL_HOST',
        'FLUXO_PART_SIZE', 'FLUXO_PARALLEL_PARTS', 'FLUXO_MAX_RETRIES', 'FLUXO_UPLOAD_TIMEOUT',
        'FLUXO_URL_EXPIRES', 'FLUXO_KEEP_LOCAL', 'FLUXO_TEMP_RETENTION',
    ];

    /** Every ini entry the storage tests set; they are all restored after each test. */
    public const STORAGE_INI_DEFAULTS = [
        'fluxo.storage' => 'local',
        'fluxo.key_prefix' => '',
        'fluxo.s3_endpoint' => '',
        'fluxo.s3_bucket' => '',
        'fluxo.s3_region' => 'us-east-1',
        'fluxo.s3_access_key_id' => '',
        'fluxo.s3_secret_access_key' => '',
        'fluxo.s3_session_token' => '',
        'fluxo.s3_virtual_host' => '0',
        'fluxo.oss_endpoint' => '',
        'fluxo.oss_bucket' => '',
        'fluxo.oss_region' => '',
        'fluxo.oss_access_key_id' => '',
        'fluxo.oss_access_key_secret' => '',
        'fluxo.oss_security_token' => '',
        'fluxo.oss_download_domain' => '',
        'fluxo.part_size' => '8388608',
        'fluxo.parallel_parts' => '4',
        'fluxo.max_retries' => '3',
        'fluxo.upload_timeout' => '120',
        'fluxo.url_expires' => '3600',
        'fluxo.keep_local' => '0',
        'fluxo.temp_retention' => '3600',
    ];

    /**
     * s3s-fs settings, or null when FLUXO_TEST_S3_ENDPOINT is not set.
     *
     * @return array{endpoint: string, bucket: string, ak: string, sk: string, data: string, binary: string}|null
     */
    public static function s3(): ?array
    {
        $endpoint = getenv('FLUXO_TEST_S3_ENDPOINT');
        if ($endpoint === false || $endpoint === '') {
            return null;
        }
        $home = rtrim((string) getenv('HOME'), '/');
        return [
            'endpoint' => rtrim($endpoint, '/'),
            'bucket' => self::env('FLUXO_TEST_S3_BUCKET', 'fluxo-test'),
            'ak' => self::env('FLUXO_TEST_S3_AK', 'fluxo-ak'),
            'sk' => self::env('FLUXO_TEST_S3_SK', 'fluxo-sk'),
            'data' => rtrim(self::env('FLUXO_TEST_S3_DATA', ''), '/'),
            'binary' => self::env('FLUXO_TEST_S3S_FS', $home . '/.cache/fluxo/tools/bin/s3s-fs'),
        ];
    }

    /**
     * moto_server settings, or null when FLUXO_TEST_OSS_ENDPOINT is not set.
     *
     * @return array{endpoint: string, bucket: string}|null
     */
    public static function oss(): ?array
    {
        $endpoint = getenv('FLUXO_TEST_OSS_ENDPOINT');
        if ($endpoint === false || $endpoint === '') {
            return null;
        }
        return [
            'endpoint' => rtrim($endpoint, '/'),
            'bucket' => self::env('FLUXO_TEST_OSS_BUCKET', 'fluxo-oss'),
        ];
    }

    /**
     * Removes SETTING_ENV_NAMES from this process's environment (children inherit that);
     * returns what was there, for restoreEnvironment().
     *
     * @return array<string, string>
     */
    public static function clearEnvironment(): array
    {
        $saved = [];
        foreach (self::SETTING_ENV_NAMES as $name) {
            $value = getenv($name);
            if ($value !== false) {
                $saved[$name] = $value;
                putenv($name);
            }
        }
        return $saved;
    }

    /**
     * @param array<string, string> $saved
     */
    public static function restoreEnvironment(array $saved): void
    {
        foreach ($saved as $name => $value) {
            putenv($name . '=' . $value);
        }
    }

    /**
     * This process's environment as an array, for a child with a few changes.
     *
     * @param array<string, string|null> $changes null removes the variable
     * @return array<string, string>
     */
    public static function environment(array $changes = []): array
    {
        $env = [];
        foreach (getenv() as $name => $value) {
            $env[(string) $name] = (string) $value;
        }
        foreach ($changes as $name => $value) {
            if ($value === null) {
                unset($env[$name]);
            } else {
                $env[$name] = $value;
            }
        }
        return $env;
    }

    /**
     * Files (not directories) below $dir whose path contains $needle.
     *
     * @return list<string>
     */
    public static function filesContaining(string $dir, string $needle): array
    {
        if (!is_dir($dir)) {
            return [];
        }
        $found = [];
        $it = new \RecursiveIteratorIterator(
            new \RecursiveDirectoryIterator($dir, \FilesystemIterator::SKIP_DOTS),
            \RecursiveIteratorIterator::SELF_FIRST
        );
        foreach ($it as $item) {
            /** @var \SplFileInfo $item */
            if ($item->isFile() && str_contains($item->getPathname(), $needle)) {
                $found[] = $item->getPathname();
            }
        }
        return $found;
    }

    /**
     * Rows of about 100 bytes as CSV ([int id, 90-char text]), in batches, until
     * about $bytes bytes; the text differs from row to row.
     *
     * @return \Generator<int, list<list<int|string>>>
     */
    public static function bulkBatches(int $bytes, int $batchSize = 10000): \Generator
    {
        $rows = intdiv($bytes, 100) + 1;
        $pad = str_repeat('abcdefghij', 8);
        for ($n = 0; $n < $rows;) {
            $batch = [];
            for ($i = 0; $i < $batchSize && $n < $rows; $i++, $n++) {
                $batch[] = [$n, sprintf('%08x', ($n * 2654435761) & 0xffffffff) . '-' . $pad];
            }
            yield $batch;
        }
    }

    private static function env(string $name, string $default): string
    {
        $value = getenv($name);
        return ($value === false || $value === '') ? $default : $value;
    }
}
