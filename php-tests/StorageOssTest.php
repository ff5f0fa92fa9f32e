<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Exporter;
use Fluxo\ExportResult;
use Fluxo\InvalidOptionException;
use Fluxo\StorageException;
use Fluxo\Tests\Support\BackgroundProcess;
use Fluxo\Tests\Support\Env;
use Fluxo\Tests\Support\FluxoTestCase;
use Fluxo\Tests\Support\Http;
use Fluxo\Tests\Support\IniOverride;
use Fluxo\Tests\Support\ObjectStores;

/**
 * fluxo.storage = oss against moto_server, which speaks the OSS protocol but checks no
 * signature. So every request goes through scripts/oss_verify_proxy.py, which re-signs it
 * with Alibaba's SDK oss2 and refuses it (403 SignatureDoesNotMatch) unless the signatures
 * match; presigned URLs are also checked by scripts/oss_sign_check.py.
 * Servers: scripts/test-servers.sh start; eval "$(scripts/test-servers.sh env)".
 * Skipped when FLUXO_TEST_S3_ENDPOINT is not set.
 *
 * moto enforces S3's 5 MiB minimum for every part but the last, so multipart tests use part_size 5 MiB.
 */
final class StorageOssTest extends FluxoTestCase
{
    private const PART_SIZE = 5242880;

    private const AK = 'fluxo-oss-ak';

    private const CSV_TYPE = 'text/csv; charset=utf-8';

    private const XLSX_TYPE = 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';

    /** @var array<string, string> */
    private static array $savedEnv = [];

    /** @var array{endpoint: string, bucket: string} */
    private array $oss;

    private string $secret = '';

    private IniOverride $ini;

    /** The signature-checking proxy in front of moto, one per class. */
    private static ?BackgroundProcess $verifier = null;

    private static string $verifierEndpoint = '';

    /** Its log: one JSON line per request (method, target, problem or null). */
    private static string $verifierLog = '';

    private static string $classSecret = '';

    public static function setUpBeforeClass(): void
    {
        self::$savedEnv = ObjectStores::clearEnvironment();
        $oss = ObjectStores::oss();
        if ($oss === null) {
            return;
        }
        self::$classSecret = 'fluxo-oss-sk-' . bin2hex(random_bytes(6));
        $probe = stream_socket_server('tcp://127.0.0.1:0');
        $port = (int) substr((string) strrchr((string) stream_socket_get_name($probe, false), ':'), 1);
        fclose($probe);
        $base = Env::scratchDir() . '/oss-verify-' . $port;
        self::$verifierLog = $base . '.log';
        self::$verifier = new BackgroundProcess([
            Env::$python, dirname(__DIR__) . '/scripts/oss_verify_proxy.py',
            '--port', (string) $port,
            '--upstream', $oss['endpoint'],
            '--key', self::AK . ':' . self::$classSecret,
            '--log', self::$verifierLog,
        ], $base . '.out', $base . '.err');
        self::$verifierEndpoint = 'http://127.0.0.1:' . $port;
        $deadline = microtime(true) + 20;
        while (@fsockopen('127.0.0.1', $port, $errno, $errstr, 0.2) === false) {
            if (microtime(true) > $deadline || !self::$verifier->isRunning()) {
                throw new \RuntimeException('oss_verify_proxy.py did not start: ' . self::$verifier->describe());
            }
            usleep(50_000);
        }
    }

    public static function tearDownAfterClass(): void
    {
        self::$verifier?->stop();
        self::$verifier = null;
        ObjectStores::restoreEnvironment(self::$savedEnv);
        self::$savedEnv = [];
    }

    protected function setUp(): void
    {
        if (ObjectStores::s3() === null) {
            self::markTestSkipped(
                'FLUXO_TEST_S3_ENDPOINT is not set: run scripts/test-servers.sh start; '
                . 'eval "$(scripts/test-servers.sh env)"'
            );
        }
        $oss = ObjectStores::oss();
        self::assertNotNull($oss, 'FLUXO_TEST_OSS_ENDPOINT is set by scripts/test-servers.sh env');
        $oss['endpoint'] = self::$verifierEndpoint;
        $this->oss = $oss;
        $this->secret = self::$classSecret;
        $this->ini = new IniOverride();
    }

    protected function tearDown(): void
    {
        if (isset($this->ini)) {
            $this->ini->restore();
        }
    }

    /**
     * @param array<string, string|int> $overrides
     */
    private function useOss(array $overrides = []): void
    {
        $this->ini->set(ObjectStores::STORAGE_INI_DEFAULTS);
        $this->ini->set([
            'fluxo.storage' => 'oss',
            'fluxo.oss_endpoint' => $this->oss['endpoint'],
            'fluxo.oss_bucket' => $this->oss['bucket'],
            'fluxo.oss_region' => 'cn-hangzhou',
            'fluxo.oss_access_key_id' => self::AK,
            'fluxo.oss_access_key_secret' => $this->secret,
        ]);
        $this->ini->set($overrides);
    }

    /**
     * scripts/oss_sign_check.py re-signs the URL with oss2 (same bucket, key, Expires,
     * sub-resources) and compares the Signature byte for byte.
     */
    private function assertOss2AcceptsSignature(string $url, ?string $bucket = null): void
    {
        $script = dirname(__DIR__) . '/scripts/oss_sign_check.py';
        $command = [Env::$python, $script, $url, self::AK, $this->secret];
        if ($bucket !== null) {
            array_push($command, '--bucket', $bucket);
        }
        $out = Env::scratchDir() . '/sign-' . bin2hex(random_bytes(4));
        $proc = new BackgroundProcess($command, $out . '.out', $out . '.err');
        $code = $proc->waitFor(60);
        self::assertSame(0, $code, "oss2 does not produce the URL's signature:\n" . $proc->describe());
    }

    private static function assertKeyLayout(ExportResult $r): void
    {
        self::assertIsString($r->key);
        $pattern = '#^(\d{4})/(\d{2})/(\d{2})/' . preg_quote($r->taskId, '#') . '/'
            . preg_quote($r->filename, '#') . '$#u';
        self::assertMatchesRegularExpression($pattern, $r->key, 'key is YYYY/MM/DD/{task_id}/{filename}');
        preg_match($pattern, $r->key, $m);
        self::assertContains("{$m[1]}/{$m[2]}/{$m[3]}", [gmdate('Y/m/d'), gmdate('Y/m/d', time() - 86400)]);
    }

    /**
     * OSS V1 query signing: OSSAccessKeyId, absolute Expires, Signature, response-content-disposition.
     */
    private function assertOssUrl(ExportResult $r, int $expires, float $finishedAt): void
    {
        self::assertIsString($r->url);
        $q = Http::query($r->url);
        self::assertSame(self::AK, $q['OSSAccessKeyId'] ?? null, 'OSSAccessKeyId');
        self::assertMatchesRegularExpression('/^\d+$/', $q['Expires'] ?? '', 'Expires is an absolute Unix time');
        $at = (int) $q['Expires'];
        self::assertGreaterThanOrEqual((int) $finishedAt - 120 + $expires, $at, 'Expires is about now + url_expires');
        self::assertLessThanOrEqual(
            (int) ceil(microtime(true)) + $expires + 2,
            $at,
            'Expires is about now + url_expires'
        );
        self::assertArrayHasKey('Signature', $q);
        self::assertArrayHasKey('response-content-disposition', $q, 'URL carries response-content-disposition');
        self::assertStringContainsString('attachment', $q['response-content-disposition']);
        self::assertStringContainsStringIgnoringCase(
            "filename*=UTF-8''" . rawurlencode($r->filename),
            $q['response-content-disposition']
        );
        self::assertStringNotContainsString($this->secret, $r->url);
    }

    /**
     * @return array{status: int, headers: array<string, string>, body: string}
     */
    private function assertDownloads(ExportResult $r, string $contentType): array
    {
        self::assertSame(
            parse_url($this->oss['endpoint'], PHP_URL_HOST),
            parse_url($r->url, PHP_URL_HOST),
            'URL on the endpoint host (path style for an IP endpoint, as oss2 does)'
        );
        self::assertSame(
            '/' . $this->oss['bucket'] . '/' . $r->key,
            rawurldecode((string) parse_url($r->url, PHP_URL_PATH)),
            'URL path is /{bucket}/{key} for an IP endpoint'
        );
        $response = Http::get($r->url);
        $answer = "GET url answered {$response['status']}: " . substr($response['body'], 0, 500);
        self::assertSame(200, $response['status'], $answer);
        self::assertSame($r->bytes, strlen($response['body']), 'downloaded size is result bytes');
        self::assertSame(
            $r->sha256,
            hash('sha256', $response['body']),
            'the object in bucket ' . $this->oss['bucket'] . ' has the exact bytes'
        );
        // moto ignores response-content-*: these are the headers sent with the upload
        $disposition = $response['headers']['content-disposition'] ?? '';
        self::assertMatchesRegularExpression(
            '/^attachment; filename="[\x20-\x7e]+"; filename\*=UTF-8\'\'\S+$/',
            $disposition,
            'Content-Disposition sent with the upload'
        );
        self::assertStringContainsStringIgnoringCase("filename*=UTF-8''" . rawurlencode($r->filename), $disposition);
        self::assertSame(
            strtolower(str_replace(' ', '', $contentType)),
            strtolower(str_replace(' ', '', $response['headers']['content-type'] ?? '')),
            'Content-Type sent with the upload'
        );
        return $response;
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
    public function testExportLandsInTheBucket(string $format): void
    {
        $this->useOss();
        $r = $this->exportOne(
            ['format' => $format, 'filename' => "oss-{$format}", 'columns' => ['id', 'name']],
            [[1, '李四'], [2, 'plain']]
        );
        $finishedAt = microtime(true);
        self::assertSame(2, $r->records);
        self::assertSame("oss-{$format}.{$format}", $r->filename);
        self::assertNull($r->path, 'path is null unless keep_local=1');
        self::assertKeyLayout($r);
        $this->assertOssUrl($r, 3600, $finishedAt);
        $this->assertOss2AcceptsSignature($r->url);
        $this->assertDownloads($r, $format === 'csv' ? self::CSV_TYPE : self::XLSX_TYPE);
        $this->eventually(static fn (): bool => self::taskArtifacts($r->taskId) === [], 200);
        self::assertSame([], self::taskArtifacts($r->taskId), 'no local or spool copy left');

        $status = Exporter::status($r->taskId);
        self::assertNotNull($status);
        self::assertSame('COMPLETED', $status->state);
        self::assertSame($r->key, $status->key);
        self::assertIsString($status->url);
        self::assertNull($status->error);
    }

    public function testChineseFileName(): void
    {
        $this->useOss();
        $r = $this->exportOne(['filename' => '订单.csv', 'columns' => ['单号']], [['A-1'], ['A-2']]);
        $finishedAt = microtime(true);
        self::assertSame('订单.csv', $r->filename);
        self::assertKeyLayout($r);
        $this->assertOssUrl($r, 3600, $finishedAt);
        self::assertStringContainsString(
            "filename*=UTF-8''%E8%AE%A2%E5%8D%95.csv",
            Http::query($r->url)['response-content-disposition']
        );
        $this->assertOss2AcceptsSignature($r->url);
        $this->assertDownloads($r, self::CSV_TYPE);
    }

    public function testMultipartUpload(): void
    {
        $this->useOss(['fluxo.part_size' => (string) self::PART_SIZE, 'fluxo.parallel_parts' => '2']);
        $r = $this->export(
            ['columns' => ['id', 'text'], 'filename' => 'big'],
            iterator_to_array(ObjectStores::bulkBatches(12_000_000), false)
        );
        $finishedAt = microtime(true);
        self::assertGreaterThan(2 * self::PART_SIZE, $r->bytes, 'the file needs 3 parts');
        $this->assertOssUrl($r, 3600, $finishedAt);
        $this->assertOss2AcceptsSignature($r->url);
        $response = $this->assertDownloads($r, self::CSV_TYPE);
        $parts = (int) ceil($r->bytes / self::PART_SIZE);
        self::assertMatchesRegularExpression(
            '/-' . $parts . '"?$/',
            $response['headers']['etag'] ?? '',
            "multipart upload of {$parts} parts"
        );
    }

    /**
     * Every request of an upload (PutObject; InitiateMultipartUpload, UploadPart,
     * CompleteMultipartUpload) and every download is signed as oss2 signs it, with an
     * STS token too; a request signed with another secret is refused, so the check bites.
     */
    public function testEveryRequestIsSignedAsOss2SignsIt(): void
    {
        $token = 'sts-token/' . bin2hex(random_bytes(8)) . '+=';
        $this->useOss(['fluxo.part_size' => (string) self::PART_SIZE, 'fluxo.oss_security_token' => $token]);
        $since = (int) @filesize(self::$verifierLog);
        $small = $this->exportOne(['columns' => ['a'], 'filename' => '订单 1'], [['x']]);
        $big = $this->export(
            ['columns' => ['id', 'text'], 'filename' => 'signed parts'],
            iterator_to_array(ObjectStores::bulkBatches(6_000_000), false)
        );
        $this->assertDownloads($small, self::CSV_TYPE);
        $this->assertDownloads($big, self::CSV_TYPE);
        $seen = array_map(
            static fn (string $line): array => json_decode($line, true, 512, JSON_THROW_ON_ERROR),
            array_filter(explode("\n", (string) substr((string) file_get_contents(self::$verifierLog), $since)))
        );
        self::assertSame([], array_values(array_filter($seen, static fn (array $r): bool => $r['problem'] !== null)));
        $operations = array_map(static function (array $r): string {
            $query = (string) parse_url('http://h' . $r['target'], PHP_URL_QUERY);
            return match (true) {
                str_contains($query, 'Signature=') => 'download',
                str_contains($query, 'partNumber=') => 'UploadPart',
                $query === 'uploads' => 'InitiateMultipartUpload',
                str_contains($query, 'uploadId=') => 'CompleteMultipartUpload',
                default => $r['method'],
            };
        }, $seen);
        self::assertSame(
            ['PUT', 'InitiateMultipartUpload', 'UploadPart', 'UploadPart', 'CompleteMultipartUpload', 'download', 'download'],
            $operations,
            'the requests the proxy checked'
        );

        $this->useOss(['fluxo.oss_access_key_secret' => 'another-secret']);
        try {
            $this->exportOne(['columns' => ['a']], [['x']]);
            self::fail('a request signed with another secret must be refused');
        } catch (StorageException $e) {
            self::assertStringContainsString('SignatureDoesNotMatch', $e->getMessage());
        }
    }

    public function testUrlExpiresOption(): void
    {
        $this->useOss();
        $r = $this->exportOne(['columns' => ['a'], 'url_expires' => 120], [['x']]);
        $this->assertOssUrl($r, 120, microtime(true));
        $this->assertOss2AcceptsSignature($r->url);
    }

    public function testDownloadDomainReplacesTheHost(): void
    {
        $this->useOss(['fluxo.oss_download_domain' => 'https://dl.example.com']);
        $r = $this->exportOne(['columns' => ['a'], 'filename' => 'cname'], [['x']]);
        self::assertStringStartsWith('https://dl.example.com/', $r->url, 'signed URL on oss_download_domain');
        self::assertSame(
            '/' . $r->key,
            rawurldecode((string) parse_url($r->url, PHP_URL_PATH)),
            'a custom domain is bound to the bucket: path is /{key}'
        );
        $this->assertOssUrl($r, 3600, microtime(true));
        $this->assertOss2AcceptsSignature($r->url, $this->oss['bucket']);
    }

    public function testSecurityTokenIsSigned(): void
    {
        $token = 'sts-token/' . bin2hex(random_bytes(8)) . '+=';
        $this->useOss(['fluxo.oss_security_token' => $token]);
        $r = $this->exportOne(['columns' => ['a'], 'filename' => 'sts'], [['x']]);
        self::assertSame($token, Http::query($r->url)['security-token'] ?? null, 'URL carries security-token');
        $this->assertOss2AcceptsSignature($r->url);
        $this->assertDownloads($r, self::CSV_TYPE);
    }

    /**
     * @return iterable<string, array{array<string, string>, string}>
     */
    public function missingSettingProvider(): iterable
    {
        // without oss_region too: an endpoint derived from the region is not "missing"
        yield 'endpoint' => [['fluxo.oss_endpoint' => '', 'fluxo.oss_region' => ''], 'oss_endpoint'];
        yield 'bucket' => [['fluxo.oss_bucket' => ''], 'oss_bucket'];
        yield 'access key id' => [['fluxo.oss_access_key_id' => ''], 'oss_access_key_id'];
        yield 'secret' => [['fluxo.oss_access_key_secret' => ''], 'oss_access_key_secret'];
    }

    /**
     * @dataProvider missingSettingProvider
     * @param array<string, string> $cleared
     */
    public function testMissingSettingThrowsAtConstruction(array $cleared, string $name): void
    {
        $this->useOss($cleared);
        try {
            new Exporter(['columns' => ['a']]);
            self::fail("storage oss without fluxo.{$name} must throw at construction");
        } catch (InvalidOptionException $ex) {
            self::assertStringContainsString($name, $ex->getMessage(), 'the message names the missing key');
            self::assertStringNotContainsString($this->secret, $ex->getMessage());
        }
    }
}
