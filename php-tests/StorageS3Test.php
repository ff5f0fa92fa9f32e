<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Exporter;
use Fluxo\ExportResult;
use Fluxo\InvalidOptionException;
use Fluxo\StorageException;
use Fluxo\Tests\Support\BackgroundProcess;
use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\Env;
use Fluxo\Tests\Support\FluxoTestCase;
use Fluxo\Tests\Support\Http;
use Fluxo\Tests\Support\IniOverride;
use Fluxo\Tests\Support\ObjectStores;
use Fluxo\Tests\Support\XlsxReader;

/**
 * fluxo.storage = s3 against s3s-fs (real SigV4 checks), started by scripts/test-servers.sh:
 *
 *     scripts/test-servers.sh start && eval "$(scripts/test-servers.sh env)"
 *
 * Skipped when FLUXO_TEST_S3_ENDPOINT is not set. Objects are checked both through the
 * presigned URL and in s3s-fs's data dir ({data}/{bucket}/{key}).
 */
final class StorageS3Test extends FluxoTestCase
{
    private const PART_SIZE = 5242880;

    private const CSV_TYPE = 'text/csv; charset=utf-8';

    private const XLSX_TYPE = 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';

    /** Port of the extra s3s-fs that testServerStoppedMidUploadFailsTheTask() starts and kills. */
    private const SECOND_PORT = 8024;

    /** @var array<string, string> */
    private static array $savedEnv = [];

    /** @var array{endpoint: string, bucket: string, ak: string, sk: string, data: string, binary: string} */
    private array $s3;

    private IniOverride $ini;

    public static function setUpBeforeClass(): void
    {
        self::$savedEnv = ObjectStores::clearEnvironment();
    }

    public static function tearDownAfterClass(): void
    {
        ObjectStores::restoreEnvironment(self::$savedEnv);
        self::$savedEnv = [];
    }

    protected function setUp(): void
    {
        $s3 = ObjectStores::s3();
        if ($s3 === null) {
            self::markTestSkipped(
                'FLUXO_TEST_S3_ENDPOINT is not set: run scripts/test-servers.sh start; '
                . 'eval "$(scripts/test-servers.sh env)"'
            );
        }
        self::assertNotSame('', $s3['data'], 'FLUXO_TEST_S3_DATA (s3s-fs data dir) is set');
        $this->s3 = $s3;
        $this->ini = new IniOverride();
    }

    protected function tearDown(): void
    {
        if (isset($this->ini)) {
            $this->ini->restore();
        }
    }

    /**
     * Points fluxo.* at s3s-fs (every storage entry set, so php.ini leaves nothing behind).
     *
     * @param array<string, string|int> $overrides
     */
    private function useS3(array $overrides = []): void
    {
        $this->ini->set(ObjectStores::STORAGE_INI_DEFAULTS);
        $this->ini->set([
            'fluxo.storage' => 's3',
            'fluxo.s3_endpoint' => $this->s3['endpoint'],
            'fluxo.s3_bucket' => $this->s3['bucket'],
            'fluxo.s3_region' => 'us-east-1',
            'fluxo.s3_access_key_id' => $this->s3['ak'],
            'fluxo.s3_secret_access_key' => $this->s3['sk'],
        ]);
        $this->ini->set($overrides);
    }

    /**
     * The -d settings of a child PHP that exports to s3s-fs.
     *
     * @param array<string, string|null> $overrides null: not passed
     * @return array<string, string|null>
     */
    private function childIni(array $overrides = []): array
    {
        return array_merge(ObjectStores::STORAGE_INI_DEFAULTS, [
            'fluxo.storage' => 's3',
            'fluxo.s3_endpoint' => $this->s3['endpoint'],
            'fluxo.s3_bucket' => $this->s3['bucket'],
            'fluxo.s3_access_key_id' => $this->s3['ak'],
            'fluxo.s3_secret_access_key' => $this->s3['sk'],
        ], $overrides);
    }

    private function objectFile(string $key, ?string $data = null, ?string $bucket = null): string
    {
        return ($data ?? $this->s3['data']) . '/' . ($bucket ?? $this->s3['bucket']) . '/' . $key;
    }

    /**
     * key is {key_prefix/}{YYYY}/{MM}/{DD}/{task_id}/{filename}, UTC date of the export.
     */
    private static function assertKeyLayout(ExportResult $r, string $prefix = ''): void
    {
        self::assertIsString($r->key);
        $pattern = '#^' . ($prefix === '' ? '' : preg_quote($prefix, '#') . '/')
            . '(\d{4})/(\d{2})/(\d{2})/' . preg_quote($r->taskId, '#') . '/' . preg_quote($r->filename, '#') . '$#u';
        self::assertMatchesRegularExpression($pattern, $r->key, 'key is {key_prefix/}YYYY/MM/DD/{task_id}/{filename}');
        preg_match($pattern, $r->key, $m);
        $allowed = [gmdate('Y/m/d'), gmdate('Y/m/d', time() - 86400)];
        self::assertContains("{$m[1]}/{$m[2]}/{$m[3]}", $allowed, 'date folders are the UTC date');
    }

    /**
     * The presigned URL: path style on the configured endpoint, SigV4 query parameters,
     * response-content-disposition naming the file.
     */
    private function assertPresignedUrl(ExportResult $r, int $expires): void
    {
        self::assertIsString($r->url);
        $prefix = $this->s3['endpoint'] . '/' . $this->s3['bucket'] . '/';
        self::assertStringStartsWith($prefix, $r->url, 'path-style URL on fluxo.s3_endpoint (s3_virtual_host=0)');
        self::assertSame(
            '/' . $this->s3['bucket'] . '/' . $r->key,
            rawurldecode((string) parse_url($r->url, PHP_URL_PATH)),
            'URL path is /{bucket}/{key}'
        );
        $q = Http::query($r->url);
        self::assertSame('AWS4-HMAC-SHA256', $q['X-Amz-Algorithm'] ?? null, 'X-Amz-Algorithm');
        self::assertStringStartsWith($this->s3['ak'] . '/', $q['X-Amz-Credential'] ?? '', 'X-Amz-Credential');
        self::assertStringEndsWith('/us-east-1/s3/aws4_request', $q['X-Amz-Credential'] ?? '', 'credential scope');
        self::assertSame((string) $expires, $q['X-Amz-Expires'] ?? null, 'X-Amz-Expires is url_expires');
        self::assertMatchesRegularExpression('/^[0-9a-f]{64}$/', $q['X-Amz-Signature'] ?? '', 'X-Amz-Signature');
        self::assertArrayHasKey('response-content-disposition', $q, 'URL carries response-content-disposition');
        $disposition = $q['response-content-disposition'];
        self::assertStringContainsString('attachment', $disposition);
        self::assertStringContainsStringIgnoringCase(
            "filename*=UTF-8''" . rawurlencode($r->filename),
            $disposition,
            'response-content-disposition has the RFC 5987 file name'
        );
        foreach ([$this->s3['sk']] as $secret) {
            self::assertStringNotContainsString($secret, $r->url, 'secret not in the URL');
        }
    }

    /**
     * Downloads the URL; the body is the exported file, the headers are those of the upload.
     *
     * @return array{status: int, headers: array<string, string>, body: string}
     */
    private function assertDownloads(ExportResult $r, string $contentType): array
    {
        $response = Http::get($r->url);
        $answer = "GET url answered {$response['status']}: " . substr($response['body'], 0, 500);
        self::assertSame(200, $response['status'], $answer);
        self::assertSame($r->bytes, strlen($response['body']), 'downloaded size is result bytes');
        self::assertSame($r->sha256, hash('sha256', $response['body']), 'downloaded bytes hash to result sha256');
        $disposition = $response['headers']['content-disposition'] ?? '';
        self::assertStringContainsString('attachment', $disposition, 'Content-Disposition: attachment');
        self::assertStringContainsStringIgnoringCase(
            "filename*=UTF-8''" . rawurlencode($r->filename),
            $disposition,
            'Content-Disposition names the file (RFC 5987)'
        );
        self::assertSame(
            strtolower(str_replace(' ', '', $contentType)),
            strtolower(str_replace(' ', '', $response['headers']['content-type'] ?? '')),
            'Content-Type of the object'
        );
        self::assertSame($r->sha256, $response['headers']['x-amz-meta-sha256'] ?? null, 'user metadata sha256');
        $this->assertUploadMetadata($r, $contentType);
        return $response;
    }

    /**
     * What the upload sent, as s3s-fs 0.14.1 stores it beside the object:
     * {data}/.bucket-{base64url(bucket)}.object-{base64url(key)}.metadata.json. (A GET's
     * Content-Disposition is the URL's response-content-disposition, so the stored one is read here.)
     */
    private function assertUploadMetadata(ExportResult $r, string $contentType): void
    {
        $b64 = static fn (string $s): string => rtrim(strtr(base64_encode($s), '+/', '-_'), '=');
        $file = sprintf(
            '%s/.bucket-%s.object-%s.metadata.json',
            $this->s3['data'],
            $b64($this->s3['bucket']),
            $b64($r->key)
        );
        self::assertFileExists($file, 's3s-fs keeps the upload\'s headers beside the object');
        $meta = json_decode((string) file_get_contents($file), true);
        self::assertIsArray($meta);
        self::assertSame($contentType, $meta['content_type'] ?? null, 'Content-Type sent with the upload');
        self::assertSame(
            ['sha256' => $r->sha256],
            $meta['user_metadata'] ?? null,
            'x-amz-meta-sha256 sent with the upload'
        );
        $disposition = (string) ($meta['content_disposition'] ?? '');
        self::assertMatchesRegularExpression(
            '/^attachment; filename="[\x20-\x7e]+"; filename\*=UTF-8\'\'\S+$/',
            $disposition,
            'Content-Disposition sent with the upload: attachment; filename="<ascii>"; filename*=UTF-8\'\'...'
        );
        self::assertStringContainsStringIgnoringCase("filename*=UTF-8''" . rawurlencode($r->filename), $disposition);
    }

    /**
     * @return array<string, array{string}>
     */
    public function formatProvider(): array
    {
        return ['csv' => ['csv'], 'xlsx' => ['xlsx']];
    }

    /**
     * @dataProvider formatProvider
     */
    public function testExportUploadsAndTheUrlDownloadsTheExactBytes(string $format): void
    {
        $this->useS3();
        $rows = [[1, '张三', 12.5, true], [2, 'Zoë "quoted", comma', -3.25, false], [3, null, 0, true]];
        $r = $this->exportOne(
            ['format' => $format, 'filename' => "orders-{$format}", 'columns' => ['id', 'name', 'amount', 'paid']],
            $rows
        );

        self::assertMatchesRegularExpression(self::UUID_V7, $r->taskId);
        self::assertSame($format, $r->format);
        self::assertSame(3, $r->records);
        self::assertSame("orders-{$format}.{$format}", $r->filename);
        self::assertMatchesRegularExpression('/^[0-9a-f]{64}$/', $r->sha256);
        self::assertGreaterThan(0, $r->bytes);
        self::assertNull($r->path, 'path is null unless keep_local=1');
        self::assertKeyLayout($r);
        $this->assertPresignedUrl($r, 3600);

        $object = $this->objectFile($r->key);
        self::assertFileExists($object, 'object is in the s3s-fs data dir');
        self::assertSame($r->bytes, filesize($object));
        self::assertSame($r->sha256, hash_file('sha256', $object));

        $response = $this->assertDownloads($r, $format === 'csv' ? self::CSV_TYPE : self::XLSX_TYPE);
        $copy = Env::scratchDir() . '/' . $r->taskId . '.' . $format;
        file_put_contents($copy, $response['body']);
        if ($format === 'csv') {
            self::assertSame(
                [
                    ['id', 'name', 'amount', 'paid'],
                    ['1', '张三', '12.5', 'TRUE'],
                    ['2', 'Zoë "quoted", comma', '-3.25', 'FALSE'],
                    ['3', '', '0', 'TRUE'],
                ],
                $this->readCsv($copy)
            );
        } else {
            $sheet = XlsxReader::dump($copy)['sheets'][0];
            self::assertSame(['id', 'name', 'amount', 'paid'], $sheet['rows'][0]);
            self::assertCount(4, $sheet['rows']);
            self::assertSame('张三', $sheet['rows'][1][1]);
        }

        $this->eventually(static fn (): bool => self::taskArtifacts($r->taskId) === [], 200);
        self::assertSame([], self::taskArtifacts($r->taskId), 'no local or spool copy left (keep_local=0)');

        $status = Exporter::status($r->taskId);
        self::assertNotNull($status);
        self::assertSame('COMPLETED', $status->state);
        self::assertSame($r->key, $status->key, 'TaskStatus key');
        self::assertSame($r->sha256, $status->sha256);
        self::assertIsString($status->url, 'TaskStatus url is set once COMPLETED');
        self::assertStringStartsWith($this->s3['endpoint'] . '/' . $this->s3['bucket'] . '/', $status->url);
        self::assertNull($status->path);
        self::assertNull($status->error);
    }

    public function testChineseFileNameIsInTheKeyAndTheContentDisposition(): void
    {
        $this->useS3();
        $r = $this->exportOne(
            ['filename' => '订单.csv', 'columns' => ['单号', '金额']],
            [['A-1', 10], ['A-2', 20]]
        );
        self::assertSame('订单.csv', $r->filename);
        self::assertKeyLayout($r);
        self::assertStringEndsWith('/订单.csv', $r->key);
        $this->assertPresignedUrl($r, 3600);
        $response = $this->assertDownloads($r, self::CSV_TYPE);
        self::assertStringContainsString(
            "filename*=UTF-8''%E8%AE%A2%E5%8D%95.csv",
            $response['headers']['content-disposition']
        );
        self::assertFileExists($this->objectFile($r->key));
    }

    public function testKeyPrefixGoesBeforeTheDate(): void
    {
        $this->useS3(['fluxo.key_prefix' => 'tenant-7/exports']);
        $r = $this->exportOne(['columns' => ['a']], [['x']]);
        self::assertKeyLayout($r, 'tenant-7/exports');
        $this->assertPresignedUrl($r, 3600);
        self::assertFileExists($this->objectFile($r->key));
        $this->assertDownloads($r, self::CSV_TYPE);
    }

    public function testKeepLocalKeepsTheFileAndSetsPath(): void
    {
        $this->useS3(['fluxo.keep_local' => '1']);
        $r = $this->exportOne(['columns' => ['a'], 'filename' => 'kept'], [['x'], ['y']]);
        self::assertIsString($r->path, 'path is set with keep_local=1');
        self::assertFileExists($r->path);
        self::assertStringStartsWith(self::localDir() . '/', $r->path, 'the kept file is in local_dir');
        self::assertStringEndsWith('/' . $r->taskId . '/kept.csv', $r->path);
        self::assertSame($r->sha256, hash_file('sha256', $r->path));
        self::assertSame($r->bytes, filesize($r->path));
        self::assertKeyLayout($r);
        $this->assertDownloads($r, self::CSV_TYPE);
        self::assertFileExists($this->objectFile($r->key));
    }

    public function testLocalStorageKeyIsThePathRelativeToLocalDir(): void
    {
        $this->ini->set(ObjectStores::STORAGE_INI_DEFAULTS);
        $r = $this->exportOne(['columns' => ['a'], 'storage' => 'local'], [['x']]);
        $this->assertResult($r, 'csv', 1);
        self::assertSame(substr($r->path, strlen(self::localDir()) + 1), $r->key, 'key is path relative to local_dir');
        self::assertKeyLayout($r);
        self::assertSame($r->key, Exporter::status($r->taskId)?->key);
    }

    public function testStorageOptionS3OverridesIniLocal(): void
    {
        $this->useS3(['fluxo.storage' => 'local']);
        $r = $this->exportOne(['columns' => ['a'], 'storage' => 's3'], [['x']]);
        self::assertNull($r->path);
        self::assertFileExists($this->objectFile($r->key));
        $this->assertDownloads($r, self::CSV_TYPE);
    }

    public function testMultipartUploadOfTwentyMegabytes(): void
    {
        $this->useS3(['fluxo.part_size' => (string) self::PART_SIZE, 'fluxo.parallel_parts' => '2']);
        $r = $this->export(
            ['columns' => ['id', 'text'], 'filename' => 'big'],
            iterator_to_array(ObjectStores::bulkBatches(20_000_000), false)
        );
        self::assertGreaterThan(3 * self::PART_SIZE, $r->bytes, 'the file needs at least 4 parts');
        $object = $this->objectFile($r->key);
        self::assertFileExists($object);
        clearstatcache(true, $object);
        self::assertSame($r->bytes, filesize($object), 'object has the exact size');
        self::assertSame($r->sha256, hash_file('sha256', $object), 'object has the exact bytes');

        $response = $this->assertDownloads($r, self::CSV_TYPE);
        $parts = (int) ceil($r->bytes / self::PART_SIZE);
        self::assertMatchesRegularExpression(
            '/-' . $parts . '"?$/',
            $response['headers']['etag'] ?? '',
            "multipart ETag of {$parts} parts of part_size bytes"
        );
        $this->eventually(static fn (): bool => self::taskArtifacts($r->taskId) === [], 200);
        self::assertSame([], self::taskArtifacts($r->taskId), 'spool file removed after the upload');
        @unlink($object); // keep the shared s3s-fs data dir small
    }

    /**
     * An upload holds none of its parts in memory: each request reads its
     * part from the spool file as it sends it. Two processes export the same
     * 48 MB CSV, one to the local folder and one to S3 with the default
     * parts (8 MiB, four at a time). Holding the parts, as opendal's writer
     * did (those in flight, one held back, one read ahead: 48 MiB), raised
     * the upload's peak RSS by 49 MB here (3 MB now).
     */
    public function testAnUploadHoldsNoPartsInMemory(): void
    {
        $code = <<<'PHP'
            $e = new Fluxo\Exporter(['columns' => ['id', 'text'], 'storage' => $argv[1]]);
            $pad = str_repeat('abcdefghij', 8);
            for ($b = 0; $b < 48; $b++) {
                $rows = [];
                for ($i = $b * 10000; $i < ($b + 1) * 10000; $i++) {
                    $rows[] = [$i, sprintf('%08x', ($i * 2654435761) & 0xffffffff) . '-' . $pad];
                }
                $e->addBatch($rows);
            }
            $r = $e->finish();
            preg_match('/^VmHWM:\s+(\d+)\s+kB/m', (string) file_get_contents('/proc/self/status'), $hwm);
            echo json_encode(['bytes' => $r->bytes, 'sha256' => $r->sha256, 'key' => $r->key, 'vmhwm_kb' => (int) $hwm[1]]), "\n";
            PHP;
        $ini = $this->childIni();
        $peaks = [];
        foreach (['local', 's3'] as $storage) {
            $child = ChildPhp::run($code, [$storage], $ini);
            self::assertSame(0, $child->exitCode, $child->describe());
            $peaks[$storage] = $child->json();
        }
        $uploaded = $peaks['s3'];
        self::assertGreaterThan(5 * 8388608, $uploaded['bytes'], 'the file needs six parts');
        $object = $this->objectFile($uploaded['key']);
        self::assertSame($peaks['local']['sha256'], hash_file('sha256', $object), 'the object is the local file');
        @unlink($object);
        $extra = ($uploaded['vmhwm_kb'] - $peaks['local']['vmhwm_kb']) / 1024;
        fwrite(STDERR, sprintf("\n[memory] the upload raised the peak RSS by %.1f MB\n", $extra));
        self::assertLessThan(16.0, $extra, 'peak RSS of the upload over the local export, in MB');
    }

    /**
     * A child forked after its parent uploaded uploads too. It hung for ever: the
     * parent's I/O runtime, copied without its threads, was dropped in the child,
     * and the drop waited for those threads.
     */
    public function testAChildForkedAfterAnUploadUploads(): void
    {
        $code = <<<'PHP'
            $export = static function (string $name): string {
                $e = new Fluxo\Exporter(['columns' => ['c'], 'filename' => $name]);
                $e->addBatch([[$name]]);
                return $e->finish()->key;
            };
            $keys = ['parent' => $export('parent')];
            $pid = pcntl_fork();
            if ($pid === 0) {
                echo json_encode(['child' => $export('child')]), "\n";
                exit(0);
            }
            pcntl_waitpid($pid, $status);
            $keys['child_exit'] = pcntl_wexitstatus($status);
            echo json_encode($keys), "\n";
            PHP;
        $ini = $this->childIni(['fluxo.upload_timeout' => '20']);
        $script = ChildPhp::script($code);
        $out = Env::scratchDir() . '/fork-upload-' . bin2hex(random_bytes(4));
        $proc = new BackgroundProcess(ChildPhp::command($script, [], $ini), $out . '.out', $out . '.err');
        $exit = $proc->waitFor(60);
        self::assertSame(0, $exit, 'the parent and its child end: ' . $proc->describe());
        $lines = array_map(
            static fn (string $line): array => json_decode($line, true, 512, JSON_THROW_ON_ERROR),
            array_values(array_filter(explode("\n", $proc->stdout())))
        );
        $child = $lines[0]['child'] ?? null;
        self::assertIsString($child, $proc->describe());
        self::assertSame(0, $lines[1]['child_exit'] ?? null, $proc->describe());
        foreach ([$lines[1]['parent'], $child] as $key) {
            self::assertFileExists($this->objectFile($key));
            @unlink($this->objectFile($key));
        }
    }

    /**
     * A script that ends with a finishAsync() upload still running past
     * fluxo.shutdown_timeout fails it, so its upload is stopped (and a multipart
     * upload aborted). It used to be abandoned: parts stored, task UPLOADING until
     * its process was found dead.
     */
    public function testAnUploadRunningPastTheShutdownTimeoutIsFailed(): void
    {
        // A store that takes connections and never answers.
        $silent = stream_socket_server('tcp://127.0.0.1:0');
        self::assertIsResource($silent);
        $ini = $this->childIni([
            'fluxo.s3_endpoint' => 'http://' . stream_socket_get_name($silent, false),
            'fluxo.upload_timeout' => '600',
            'fluxo.shutdown_timeout' => '1',
        ]);
        $child = ChildPhp::run(<<<'PHP'
            $e = new Fluxo\Exporter(['columns' => ['c']]);
            $e->addBatch([['x']]);
            echo json_encode(['task' => $e->finishAsync()]), "\n";
            PHP, [], $ini);
        fclose($silent);
        self::assertSame(0, $child->exitCode, $child->describe());
        self::assertStringContainsString('failed, their uploads aborted', $child->stderr);
        $status = Exporter::status($child->json()['task']);
        self::assertNotNull($status);
        self::assertSame('FAILED', $status->state);
        self::assertStringContainsString(
            'the PHP process ended before the export finished (fluxo.shutdown_timeout = 1 s)',
            (string) $status->error
        );
    }

    public function testTamperedSignatureIsRefused(): void
    {
        $this->useS3();
        $r = $this->exportOne(['columns' => ['a'], 'filename' => 'tamper.csv'], [['x']]);
        self::assertSame(200, Http::get($r->url)['status'], 'the genuine URL works');

        $tampered = preg_replace_callback(
            '/(X-Amz-Signature=)([0-9a-f])/',
            static fn (array $m): string => $m[1] . ($m[2] === '0' ? '1' : '0'),
            $r->url,
            1,
            $count
        );
        self::assertSame(1, $count, 'URL has an X-Amz-Signature');
        $response = Http::get((string) $tampered);
        self::assertSame(403, $response['status'], 'one changed signature character: 403');
        self::assertStringContainsString('SignatureDoesNotMatch', $response['body']);

        $otherKey = str_replace('/tamper.csv?', '/other.csv?', $r->url);
        self::assertNotSame($r->url, $otherKey);
        self::assertSame(403, Http::get($otherKey)['status'], 'the signature is bound to the key');
    }

    public function testUrlExpires(): void
    {
        $this->useS3();
        $r = $this->exportOne(['columns' => ['a'], 'url_expires' => 1], [['x']]);
        $this->assertPresignedUrl($r, 1);
        sleep(2);
        $response = Http::get($r->url);
        self::assertSame(403, $response['status'], 'URL expired after url_expires=1 second');
        self::assertStringContainsString('AccessDenied', $response['body']);
    }

    public function testUrlExpiresIni(): void
    {
        $this->useS3(['fluxo.url_expires' => '900']);
        $r = $this->exportOne(['columns' => ['a']], [['x']]);
        $this->assertPresignedUrl($r, 900);
        $this->assertDownloads($r, self::CSV_TYPE);
    }

    /** At the default log level (warn), an upload's retries name their task. */
    public function testTheUploadsLogLinesNameTheTask(): void
    {
        $closed = stream_socket_server('tcp://127.0.0.1:0');
        self::assertIsResource($closed);
        $nowhere = 'http://' . stream_socket_get_name($closed, false);
        fclose($closed);
        $code = <<<'PHP'
            $e = new Fluxo\Exporter(['columns' => ['a']]);
            $e->addRow(['x']);
            try {
                $e->finish();
            } catch (Fluxo\StorageException) {
            }
            echo json_encode(['taskId' => $e->taskId()]), "\n";
            PHP;
        $ini = $this->childIni(['fluxo.s3_endpoint' => $nowhere, 'fluxo.max_retries' => '1', 'fluxo.log_level' => null]);
        $child = ChildPhp::run($code, [], $ini);
        self::assertSame(0, $child->exitCode, $child->describe());
        $retries = array_values(array_filter(
            array_map(static fn (string $line): mixed => json_decode($line, true), explode("\n", $child->stderr)),
            static fn (mixed $line): bool => is_array($line) && $line['message'] === 'object store request failed: retrying',
        ));
        self::assertCount(1, $retries, $child->stderr);
        self::assertSame('WARN', $retries[0]['level']);
        self::assertSame(['task_id' => $child->json()['taskId'], 'name' => 'export'], $retries[0]['span'] ?? null, $child->stderr);
    }

    public function testWrongSecretFailsTheTaskWithoutLeakingIt(): void
    {
        $secret = 'wrong-secret-' . bin2hex(random_bytes(8));
        $log = Env::scratchDir() . '/wrong-secret-' . bin2hex(random_bytes(4)) . '.log';
        $this->useS3([
            'fluxo.s3_secret_access_key' => $secret,
            'fluxo.max_retries' => '1',
            'fluxo.upload_timeout' => '60',
            'fluxo.log_level' => 'debug',
            'fluxo.log_file' => $log,
        ]);
        $e = new Exporter(['columns' => ['a'], 'filename' => 'denied']);
        $taskId = $e->taskId();
        $e->addBatch([['x'], ['y']]);
        $started = microtime(true);
        try {
            $e->finish();
            self::fail('finish() must throw with a wrong secret');
        } catch (StorageException $ex) {
            $message = $ex->getMessage();
            self::assertMatchesRegularExpression(
                '/403|SignatureDoesNotMatch/',
                $message,
                'says what the store answered'
            );
            self::assertStringNotContainsString($secret, $message, 'secret not in the exception message');
        }
        self::assertLessThan(60, microtime(true) - $started, 'a 403 is not retried until upload_timeout');

        $status = Exporter::status($taskId);
        self::assertNotNull($status);
        self::assertSame('FAILED', $status->state);
        self::assertIsString($status->error);
        self::assertNotSame('', $status->error);
        self::assertStringNotContainsString($secret, $status->error);
        self::assertNull($status->url);

        $statusFile = self::workDir() . '/tasks/' . $taskId . '.json';
        self::assertFileExists($statusFile);
        self::assertStringNotContainsString(
            $secret,
            (string) file_get_contents($statusFile),
            'secret not in the status file'
        );
        if (is_file($log)) {
            self::assertStringNotContainsString($secret, (string) file_get_contents($log), 'secret not in the log');
        }
        self::assertSame(
            [],
            ObjectStores::filesContaining($this->s3['data'] . '/' . $this->s3['bucket'], $taskId),
            'no object for the task'
        );
    }

    /**
     * @return iterable<string, array{string, string}>
     */
    public function missingSettingProvider(): iterable
    {
        yield 'endpoint' => ['fluxo.s3_endpoint', 's3_endpoint'];
        yield 'bucket' => ['fluxo.s3_bucket', 's3_bucket'];
        yield 'access key id' => ['fluxo.s3_access_key_id', 's3_access_key_id'];
        yield 'secret' => ['fluxo.s3_secret_access_key', 's3_secret_access_key'];
    }

    /**
     * @dataProvider missingSettingProvider
     */
    public function testMissingSettingThrowsAtConstruction(string $iniKey, string $name): void
    {
        $this->useS3([$iniKey => '']);
        try {
            new Exporter(['columns' => ['a']]);
            self::fail("storage s3 without {$iniKey} must throw at construction");
        } catch (InvalidOptionException $ex) {
            self::assertStringContainsString($name, $ex->getMessage(), 'the message names the missing key');
            self::assertStringNotContainsString($this->s3['sk'], $ex->getMessage());
        }

        // the same through the per-export option
        $this->ini->set(['fluxo.storage' => 'local']);
        $this->expectException(InvalidOptionException::class);
        $this->expectExceptionMessageMatches('/' . preg_quote($name, '/') . '/');
        new Exporter(['columns' => ['a'], 'storage' => 's3']);
    }

    public function testStatusDuringAndAfterTheUpload(): void
    {
        $this->useS3(['fluxo.part_size' => (string) self::PART_SIZE, 'fluxo.parallel_parts' => '1']);
        $e = new Exporter(['columns' => ['id', 'text'], 'filename' => 'async', 'total_rows' => 200001]);
        foreach (ObjectStores::bulkBatches(20_000_000) as $batch) {
            $e->addBatch($batch);
        }
        $id = $e->finishAsync();
        $seen = [];
        $last = null;
        $deadline = microtime(true) + 120;
        while (microtime(true) < $deadline) {
            $last = Exporter::status($id);
            self::assertNotNull($last);
            self::assertContains($last->state, self::ALL_STATES);
            self::assertGreaterThanOrEqual(0, $last->progress);
            self::assertLessThanOrEqual(100, $last->progress);
            $seen[$last->state] = true;
            if (in_array($last->state, self::TERMINAL_STATES, true)) {
                break;
            }
            usleep(2000);
        }
        self::assertSame('COMPLETED', $last?->state, json_encode(self::snapshot($last)) ?: '');
        self::assertArrayHasKey(
            'UPLOADING',
            $seen,
            'state is UPLOADING while the upload runs; seen: ' . implode(',', array_keys($seen))
        );
        self::assertSame(100, $last->progress);
        self::assertIsString($last->url);
        self::assertIsString($last->key);
        self::assertNull($last->path);
        self::assertIsString($last->sha256);
        $object = $this->objectFile($last->key);
        self::assertFileExists($object);
        self::assertSame($last->sha256, hash_file('sha256', $object));
        self::assertSame($last->bytes, filesize($object));
        $response = Http::get($last->url);
        self::assertSame(200, $response['status']);
        self::assertSame($last->sha256, hash('sha256', $response['body']), 'status url downloads the file');
        unset($e);
        @unlink($object); // keep the shared s3s-fs data dir small
    }

    public function testSecretsAreMaskedInPhpRi(): void
    {
        $secrets = [
            'fluxo.s3_secret_access_key' => 's3-secret-' . bin2hex(random_bytes(6)),
            'fluxo.s3_session_token' => 's3-token-' . bin2hex(random_bytes(6)),
            'fluxo.oss_access_key_secret' => 'oss-secret-' . bin2hex(random_bytes(6)),
            'fluxo.oss_security_token' => 'oss-token-' . bin2hex(random_bytes(6)),
            'fluxo.auth_token' => 'auth-token-' . bin2hex(random_bytes(6)),
            'fluxo.download_secret' => 'download-secret-' . bin2hex(random_bytes(6)),
        ];
        $command = [PHP_BINARY, '-n', '-d', 'extension=' . Env::$so];
        foreach ($secrets as $key => $value) {
            $command[] = '-d';
            $command[] = $key . '=' . $value;
        }
        array_push($command, '--ri', 'fluxo');
        $envSecret = 'env-secret-' . bin2hex(random_bytes(6));

        foreach ([[], ['AWS_SECRET_ACCESS_KEY' => $envSecret, 'OSS_ACCESS_KEY_SECRET' => $envSecret]] as $extraEnv) {
            $out = Env::scratchDir() . '/ri-' . bin2hex(random_bytes(4));
            $proc = new BackgroundProcess($command, $out . '.out', $out . '.err', ObjectStores::environment($extraEnv));
            $code = $proc->waitFor(30);
            self::assertSame(0, $code, $proc->describe());
            $text = $proc->stdout() . $proc->stderr();
            self::assertStringContainsString('s3_secret_access_key', $text, 'php --ri lists the key');
            self::assertStringContainsString('***', $text, 'secrets are shown as ***');
            foreach ($secrets as $key => $value) {
                self::assertStringNotContainsString($value, $text, "{$key} is not shown by php --ri");
            }
            self::assertStringNotContainsString($envSecret, $text, 'secrets from the environment are not shown');
        }
    }

    /**
     * Well-known names (AWS_*, S3_*) rank above php.ini, FLUXO_<KEY> above them.
     */
    public function testEnvironmentNamesRankAboveIni(): void
    {
        $code = <<<'PHP'
            $e = new Fluxo\Exporter(['columns' => ['a'], 'storage' => 's3']);
            $e->addRow(['x']);
            try {
                $r = $e->finish();
                echo json_encode(['ok' => true, 'key' => $r->key, 'url' => $r->url]), "\n";
            } catch (Fluxo\ExportException $ex) {
                echo json_encode(['ok' => false, 'class' => get_class($ex), 'message' => $ex->getMessage()]), "\n";
            }
            PHP;
        $ini = [
            'fluxo.s3_endpoint' => 'http://127.0.0.1:9',
            'fluxo.s3_bucket' => 'no-such-bucket',
            'fluxo.s3_access_key_id' => 'ini-ak',
            'fluxo.s3_secret_access_key' => 'ini-wrong-secret',
            'fluxo.max_retries' => '0',
            'fluxo.upload_timeout' => '30',
            'fluxo.log_level' => 'debug',
            'fluxo.log_file' => '',
        ];
        $good = [
            'S3_ENDPOINT' => $this->s3['endpoint'],
            'S3_BUCKET' => $this->s3['bucket'],
            'AWS_ACCESS_KEY_ID' => $this->s3['ak'],
            'AWS_SECRET_ACCESS_KEY' => $this->s3['sk'],
        ];
        $child = ChildPhp::run($code, [], $ini, ObjectStores::environment($good));
        self::assertSame(0, $child->exitCode, $child->describe());
        $out = $child->json();
        self::assertTrue(
            $out['ok'],
            'S3_ENDPOINT, S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY override php.ini: ' . json_encode($out)
        );
        self::assertFileExists($this->objectFile($out['key']));

        $bad = $good + ['FLUXO_S3_SECRET_ACCESS_KEY' => 'fluxo-env-wrong'];
        $child = ChildPhp::run($code, [], $ini, ObjectStores::environment($bad));
        self::assertSame(0, $child->exitCode, $child->describe());
        $out = $child->json();
        self::assertFalse($out['ok'], 'FLUXO_S3_SECRET_ACCESS_KEY overrides AWS_SECRET_ACCESS_KEY');
        self::assertSame('Fluxo\\StorageException', $out['class']);
        foreach (['fluxo-env-wrong', 'ini-wrong-secret', $this->s3['sk']] as $secret) {
            self::assertStringNotContainsString($secret, $out['message'], 'no secret in the exception message');
            self::assertStringNotContainsString($secret, $child->stderr, 'no secret in the debug log (stderr)');
        }
    }

    /**
     * A second s3s-fs, killed while the task is UPLOADING: the task fails (after max_retries),
     * finish() throws StorageException, and no object appears.
     */
    public function testServerStoppedMidUploadFailsTheTask(): void
    {
        self::assertFileIsReadable($this->s3['binary'], 's3s-fs binary (scripts/test-servers.sh install)');
        $url = 'http://127.0.0.1:' . self::SECOND_PORT;
        self::assertSame(0, Http::get($url . '/', 1.0)['status'], 'port ' . self::SECOND_PORT . ' must be free');

        $childCode = <<<'PHP'
            $bytes = (int) $argv[1];
            $e = new Fluxo\Exporter(['columns' => ['id', 'text'], 'filename' => 'killed']);
            echo json_encode(['taskId' => $e->taskId()]), "\n";
            $pad = str_repeat('abcdefghij', 8);
            $rows = intdiv($bytes, 100);
            for ($n = 0; $n < $rows;) {
                $batch = [];
                for ($i = 0; $i < 10000 && $n < $rows; $i++, $n++) {
                    $batch[] = [$n, sprintf('%08x', ($n * 2654435761) & 0xffffffff) . '-' . $pad];
                }
                $e->addBatch($batch);
            }
            $t = microtime(true);
            try {
                $r = $e->finish();
                echo json_encode(['ok' => true, 'key' => $r->key, 'seconds' => microtime(true) - $t]), "\n";
            } catch (Throwable $ex) {
                echo json_encode(['ok' => false, 'class' => get_class($ex), 'message' => $ex->getMessage(),
                    'seconds' => microtime(true) - $t]), "\n";
            }
            PHP;
        $script = ChildPhp::script($childCode);

        // Attempt 2 only when the whole upload beat the kill (a race on a fast machine).
        foreach ([30_000_000, 80_000_000] as $attempt => $bytes) {
            $data = Env::$root . '/s3-second-' . $attempt;
            mkdir($data . '/' . $this->s3['bucket'], 0777, true);
            $server = new BackgroundProcess(
                [$this->s3['binary'], '--host', '127.0.0.1', '--port', (string) self::SECOND_PORT,
                    '--access-key', $this->s3['ak'], '--secret-key', $this->s3['sk'], $data],
                $data . '.out',
                $data . '.err'
            );
            self::assertTrue(
                Http::waitUntilAnswers($url . '/', 20),
                "second s3s-fs did not start\n" . $server->describe()
            );

            $child = new BackgroundProcess(
                ChildPhp::command($script, [(string) $bytes], [
                    'fluxo.storage' => 's3',
                    'fluxo.s3_endpoint' => $url,
                    'fluxo.s3_bucket' => $this->s3['bucket'],
                    'fluxo.s3_region' => 'us-east-1',
                    'fluxo.s3_access_key_id' => $this->s3['ak'],
                    'fluxo.s3_secret_access_key' => $this->s3['sk'],
                    'fluxo.part_size' => (string) self::PART_SIZE,
                    'fluxo.parallel_parts' => '1',
                    'fluxo.max_retries' => '2',
                    'fluxo.upload_timeout' => '60',
                ]),
                $script . ".{$attempt}.out",
                $script . ".{$attempt}.err"
            );
            $first = $child->waitForJsonLine(30);
            self::assertIsArray($first, "child printed no task id\n" . $child->describe());
            $taskId = (string) $first['taskId'];

            // Kill once the task is UPLOADING and s3s-fs holds at least one uploaded part
            // ({data}/.upload_id-*.part-N), or 15 s after UPLOADING began without one.
            $state = null;
            $killedAfterParts = null;
            $uploadingSince = null;
            $deadline = microtime(true) + 120;
            while (microtime(true) < $deadline) {
                $state = Exporter::status($taskId)?->state;
                if (in_array($state, self::TERMINAL_STATES, true)) {
                    break;
                }
                if ($state === 'UPLOADING') {
                    $uploadingSince ??= microtime(true);
                    $parts = glob($data . '/.upload_id-*') ?: [];
                    if ($parts !== [] || microtime(true) - $uploadingSince > 15) {
                        $server->signal(9);
                        $killedAfterParts = count($parts);
                        break;
                    }
                }
                usleep(1000);
            }
            $server->waitFor(10);
            $code = $child->waitFor(150);
            self::assertNotNull($code, "child still running 150 s after the kill\n" . $child->describe());
            $server->stop();
            $result = $child->lastJsonLine();
            self::assertIsArray($result, $child->describe());

            if (($result['ok'] ?? false) === true && $attempt === 0) {
                continue; // the upload beat the kill: try again with a bigger file
            }
            self::assertNotNull(
                $killedAfterParts,
                "task never seen UPLOADING (last state {$state})\n" . $child->describe()
            );
            self::assertGreaterThan(
                0,
                $killedAfterParts,
                'server killed mid-upload, after its first part(s) had landed'
            );
            self::assertSame(0, $code, $child->describe());
            self::assertFalse($result['ok'], 'finish() must fail once the server is gone: ' . json_encode($result));
            self::assertSame('Fluxo\\StorageException', $result['class']);
            self::assertNotSame('', $result['message']);
            self::assertStringNotContainsString($this->s3['sk'], $result['message']);
            self::assertLessThan(75, $result['seconds'], 'bounded by upload_timeout (60 s)');

            $status = Exporter::status($taskId);
            self::assertNotNull($status);
            self::assertSame('FAILED', $status->state);
            self::assertIsString($status->error);
            self::assertNotSame('', $status->error);
            self::assertNull($status->url);
            self::assertSame(
                [],
                ObjectStores::filesContaining($data . '/' . $this->s3['bucket'], $taskId),
                'no object in the killed server\'s data dir'
            );
            return;
        }
        self::fail('the upload finished before the server could be killed, twice');
    }

    /**
     * An upload over https, through a TLS front with a certificate of a private CA,
     * trusted the system's way (SSL_CERT_FILE, as OpenSSL and curl read it). Without
     * the CA the upload fails and says the certificate was not trusted.
     */
    public function testAnUploadOverHttpsTrustsTheSystemCertificates(): void
    {
        $dir = Env::scratchDir() . '/tls-' . bin2hex(random_bytes(4));
        mkdir($dir);
        self::makeCertificates($dir);
        $probe = stream_socket_server('tcp://127.0.0.1:0');
        self::assertIsResource($probe);
        $port = (int) substr((string) strrchr((string) stream_socket_get_name($probe, false), ':'), 1);
        fclose($probe);
        $relay = new BackgroundProcess([
            Env::$python, dirname(__DIR__) . '/scripts/tls_relay.py',
            '--port', (string) $port,
            '--cert', "{$dir}/leaf.pem",
            '--key', "{$dir}/leaf.key",
            '--upstream', (string) parse_url($this->s3['endpoint'], PHP_URL_HOST) . ':' . parse_url($this->s3['endpoint'], PHP_URL_PORT),
        ], "{$dir}/relay.out", "{$dir}/relay.err");
        try {
            $deadline = microtime(true) + 20;
            while (@fsockopen('127.0.0.1', $port, $errno, $errstr, 0.2) === false) {
                self::assertTrue(microtime(true) < $deadline && $relay->isRunning(), 'tls_relay.py did not start: ' . $relay->describe());
                usleep(50_000);
            }
            $code = <<<'PHP'
                $e = new Fluxo\Exporter(['columns' => ['id', 'name']]);
                $e->addBatch([[1, '张伟'], [2, 'over https']]);
                try {
                    $r = $e->finish();
                    echo json_encode(['url' => $r->url, 'key' => $r->key, 'sha256' => $r->sha256]), "\n";
                } catch (Fluxo\StorageException $ex) {
                    echo json_encode(['error' => $ex->getMessage()]), "\n";
                }
                PHP;
            $ini = $this->childIni(['fluxo.s3_endpoint' => "https://localhost:{$port}", 'fluxo.max_retries' => '0']);
            $trusted = ChildPhp::run($code, [], $ini, ['SSL_CERT_FILE' => "{$dir}/ca.pem"] + getenv());
            $stored = $trusted->json();
            self::assertArrayHasKey('key', $stored, $trusted->describe());
            self::assertStringStartsWith("https://localhost:{$port}/", $stored['url']);
            $object = $this->objectFile($stored['key']);
            self::assertSame($stored['sha256'], hash_file('sha256', $object));
            $downloaded = file_get_contents($stored['url'], false, stream_context_create(['ssl' => ['cafile' => "{$dir}/ca.pem"]]));
            self::assertSame(file_get_contents($object), $downloaded, 'the signed URL downloads over https');
            @unlink($object);

            $untrusted = ChildPhp::run($code, [], $ini, ['SSL_CERT_FILE' => "{$dir}/leaf.pem"] + getenv());
            $refused = $untrusted->json()['error'] ?? '';
            self::assertStringContainsString('invalid peer certificate: UnknownIssuer', $refused, $untrusted->describe());
            self::assertStringContainsString("in this host's trust store (update-ca-certificates), or in the file SSL_CERT_FILE names", $refused);
        } finally {
            $relay->stop();
            Env::removeTree($dir);
        }
    }

    /** A private CA (ca.pem) and a certificate it signed for localhost (leaf.pem, leaf.key). */
    private static function makeCertificates(string $dir): void
    {
        file_put_contents("{$dir}/leaf.ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
        $ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
        $steps = [
            ['openssl', 'req', '-x509', ...$ec, '-keyout', "{$dir}/ca.key", '-out', "{$dir}/ca.pem", '-days', '2', '-subj', '/CN=Fluxo test CA'],
            ['openssl', 'req', ...$ec, '-keyout', "{$dir}/leaf.key", '-out', "{$dir}/leaf.csr", '-subj', '/CN=localhost'],
            ['openssl', 'x509', '-req', '-in', "{$dir}/leaf.csr", '-CA', "{$dir}/ca.pem", '-CAkey', "{$dir}/ca.key", '-CAcreateserial',
                '-out', "{$dir}/leaf.pem", '-days', '2', '-extfile', "{$dir}/leaf.ext"],
        ];
        foreach ($steps as $command) {
            $made = ChildPhp::runCommand($command);
            self::assertSame(0, $made->exitCode, $made->describe());
        }
    }
}
