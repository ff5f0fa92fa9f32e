<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Tests\Support\BackgroundProcess;
use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\Env;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * The extension under Debian's real PHP-FPM, the way it is deployed: loaded
 * in the master, which forks the workers (threads and runtimes must start
 * in each worker, never in the master), requests sent over FastCGI by
 * `cgi-fcgi`. Exports run in requests, async ones outlive theirs, and no
 * worker dies.
 */
final class FpmTest extends FluxoTestCase
{
    private const FPM = '/usr/sbin/php-fpm8.2';

    private const CGI_FCGI = '/usr/bin/cgi-fcgi';

    private static ?BackgroundProcess $fpm = null;

    private static string $dir = '';

    public static function setUpBeforeClass(): void
    {
        if (!is_executable(self::FPM) || !is_executable(self::CGI_FCGI)) {
            self::fail('php8.2-fpm and libfcgi-bin are needed (scripts/install-deps.sh installs them)');
        }
        self::$dir = Env::scratchDir() . '/fpm-' . bin2hex(random_bytes(4));
        mkdir(self::$dir . '/www', 0777, true);
        $root = function_exists('posix_getuid') && posix_getuid() === 0;
        $pool = [
            '[global]',
            'error_log = ' . self::$dir . '/fpm.log',
            'daemonize = no',
            '[www]',
            'listen = ' . self::$dir . '/fpm.sock',
            'pm = static',
            'pm.max_children = 2',
            'catch_workers_output = yes',
            'clear_env = no',
        ];
        if ($root) {
            $pool[] = 'user = root';
            $pool[] = 'group = root';
        }
        file_put_contents(self::$dir . '/fpm.conf', implode("\n", $pool) . "\n");
        foreach (self::scripts() as $name => $code) {
            file_put_contents(self::$dir . "/www/{$name}.php", "<?php\n\ndeclare(strict_types=1);\n\n" . $code);
        }
        $command = [self::FPM, '-n', '-F', '-y', self::$dir . '/fpm.conf'];
        if ($root) {
            $command[] = '-R';
        }
        foreach (['extension' => Env::$so, 'fluxo.work_dir' => Env::$workDir, 'fluxo.local_dir' => Env::$localDir] as $key => $value) {
            array_push($command, '-d', "{$key}={$value}");
        }
        self::$fpm = new BackgroundProcess($command, self::$dir . '/fpm.out', self::$dir . '/fpm.err');
        for ($i = 0; $i < 250 && !file_exists(self::$dir . '/fpm.sock'); $i++) {
            usleep(20000);
        }
        self::assertFileExists(self::$dir . '/fpm.sock', 'php-fpm did not start: ' . self::$fpm->stderr() . self::log());
    }

    public static function tearDownAfterClass(): void
    {
        self::$fpm?->signal(15);
        self::$fpm?->waitFor(10.0);
        self::$fpm?->stop();
        Env::removeTree(self::$dir);
    }

    /** @return array<string, string> the scripts the pool serves */
    private static function scripts(): array
    {
        $rows = <<<'PHP'
            $rows = static function (int $from, int $n): array {
                $out = [];
                for ($i = $from; $i < $from + $n; $i++) {
                    $out[] = [$i, "订单 {$i}", $i * 0.5, '2026-11-29'];
                }
                return $out;
            };
            $columns = ['id', '名称', ['name' => 'amount', 'type' => 'number'], ['name' => 'day', 'type' => 'date']];

            PHP;
        return [
            'export' => $rows . <<<'PHP'
                $e = new Fluxo\Exporter(['format' => $_GET['format'], 'columns' => $columns]);
                for ($b = 0; $b < 20; $b++) {
                    $e->addBatch($rows($b * 1000, 1000));
                }
                $r = $e->finish();
                echo json_encode(['pid' => getmypid(), 'path' => $r->path, 'records' => $r->records, 'sha256' => $r->sha256]);
                PHP,
            'async' => $rows . <<<'PHP'
                $e = new Fluxo\Exporter(['format' => 'xlsx', 'columns' => $columns]);
                for ($b = 0; $b < 50; $b++) {
                    $e->addBatch($rows($b * 1000, 1000));
                }
                echo json_encode(['pid' => getmypid(), 'task' => $e->finishAsync()]);
                PHP,
            'abandon' => $rows . <<<'PHP'
                $e = new Fluxo\Exporter(['columns' => $columns]);
                $e->addBatch($rows(0, 1000));
                echo json_encode(['pid' => getmypid(), 'task' => $e->taskId()]);
                // The request ends without finish(): the export is cancelled.
                PHP,
            'cell' => <<<'PHP'
                // ?fatal=1: the cell's __toString() ends the request with a fatal error.
                ini_set('display_errors', '0');
                $fatal = ($_GET['fatal'] ?? '') === '1';
                $e = new Fluxo\Exporter(['columns' => ['a']]);
                $cell = new class ($fatal) {
                    public function __construct(private bool $fatal)
                    {
                    }

                    public function __toString(): string
                    {
                        if ($this->fatal) {
                            trigger_error('a fatal error while a cell is read', E_USER_ERROR);
                        }
                        return 'text';
                    }
                };
                if ($fatal) {
                    echo json_encode(['pid' => getmypid()]);
                }
                $e->addBatch([[$cell]]);
                echo json_encode(['pid' => getmypid(), 'records' => $e->finish()->records]);
                PHP,
            'status' => <<<'PHP'
                $s = Fluxo\Exporter::status($_GET['task']);
                echo json_encode(['pid' => getmypid(), 'state' => $s?->state, 'path' => $s?->path, 'sha256' => $s?->sha256, 'records' => $s?->records]);
                PHP,
        ];
    }

    /**
     * One request over FastCGI; the JSON its script printed.
     *
     * @param array<string, string> $query
     * @return array<string, mixed>
     */
    private static function request(string $script, array $query = []): array
    {
        $env = [
            'SCRIPT_FILENAME' => self::$dir . "/www/{$script}.php",
            'REQUEST_METHOD' => 'GET',
            'QUERY_STRING' => http_build_query($query),
            'PATH' => (string) getenv('PATH'),
        ];
        $result = ChildPhp::runCommand([self::CGI_FCGI, '-bind', '-connect', self::$dir . '/fpm.sock'], $env);
        self::assertSame(0, $result->exitCode, $result->describe() . self::log());
        [, $body] = explode("\r\n\r\n", $result->stdout, 2) + [1 => ''];
        $data = json_decode($body, true);
        self::assertIsArray($data, "{$script}: " . $result->stdout . self::log());
        return $data;
    }

    /**
     * The task's status, asked in requests until it is final (at most 15 s).
     *
     * @return array<string, mixed>
     */
    private static function waitForFinalStatus(string $task): array
    {
        for ($i = 0; $i < 300; $i++) {
            $status = self::request('status', ['task' => $task]);
            if (in_array($status['state'], ['COMPLETED', 'FAILED', 'CANCELLED'], true)) {
                break;
            }
            usleep(50000);
        }
        return $status;
    }

    private static function log(): string
    {
        return "\n--- fpm log ---\n" . @file_get_contents(self::$dir . '/fpm.log');
    }

    private static function assertNoWorkerDied(): void
    {
        $log = (string) @file_get_contents(self::$dir . '/fpm.log');
        self::assertDoesNotMatchRegularExpression('/exited on signal|SIGSEGV|SIGBUS|SIGABRT|core dumped/', $log, $log);
        self::assertTrue(self::$fpm?->isRunning(), 'the master runs' . self::log());
    }

    public function testExportsRunInTheForkedWorkers(): void
    {
        $pids = [];
        foreach (['csv', 'xlsx', 'csv', 'xlsx', 'csv', 'xlsx'] as $format) {
            $r = self::request('export', ['format' => $format]);
            self::assertSame(20000, $r['records']);
            self::assertFileExists($r['path']);
            self::assertSame(hash_file('sha256', $r['path']), $r['sha256'], $format);
            $pids[$r['pid']] = true;
        }
        self::assertNotContains(self::$fpm?->pid, array_keys($pids), 'requests run in workers, not the master');
        $masterThreads = glob('/proc/' . self::$fpm?->pid . '/task/*') ?: [];
        self::assertCount(1, $masterThreads, 'the master, which forks every worker, starts no thread');
        self::assertNoWorkerDied();
    }

    /**
     * A fatal error in PHP code run while a row is read jumps back over
     * Fluxo's frames: the worker lives on, and its later exporters take
     * their rows (`ValuesTest::testAFatalErrorInACellLeavesFluxoUsableInShutdownFunctions`
     * shows the exporter is no longer marked as reading rows).
     */
    public function testAFatalErrorWhileACellIsReadLeavesTheWorkersExportersWorking(): void
    {
        for ($i = 0; $i < 4; $i++) {
            self::request('cell', ['fatal' => '1']);
        }
        for ($i = 0; $i < 8; $i++) {
            self::assertSame(1, self::request('cell')['records']);
        }
        self::assertNoWorkerDied();
    }

    public function testAnAsyncExportOutlivesItsRequestAndIsReadFromAnotherOne(): void
    {
        $started = self::request('async');
        $status = self::waitForFinalStatus($started['task']);
        self::assertSame('COMPLETED', $status['state'], json_encode($status) . self::log());
        self::assertSame(50000, $status['records']);
        self::assertSame(hash_file('sha256', $status['path']), $status['sha256']);
        $rows = $this->readXlsx($status['path'])['sheets'][0]['rows'];
        self::assertCount(50001, $rows);
        self::assertSame([49999, '订单 49999', 24999.5], array_slice($rows[50000], 0, 3));
        self::assertNoWorkerDied();
    }

    public function testARequestThatNeverFinishesLeavesACancelledTaskAndALiveWorker(): void
    {
        $abandoned = self::request('abandon');
        $status = self::waitForFinalStatus($abandoned['task']);
        self::assertSame('CANCELLED', $status['state']);
        self::assertNull($status['path']);
        self::assertSame(20000, self::request('export', ['format' => 'csv'])['records'], 'the workers go on serving');
        self::assertNoWorkerDied();
    }
}
