<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Exporter;
use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * A task whose owning process dies (SIGKILL, no shutdown at all) reports FAILED
 * with an error mentioning the process.
 */
final class OwnerDeathTest extends FluxoTestCase
{
    /**
     * @return iterable<string, array{string}>
     */
    public static function formatProvider(): iterable
    {
        yield 'csv' => ['csv'];
        yield 'xlsx' => ['xlsx'];
    }

    /**
     * @dataProvider formatProvider
     */
    public function testKilledOwnerMeansFailed(string $format): void
    {
        // The child prints its task id, then keeps adding rows forever.
        $child = ChildPhp::start(<<<'PHP'
            $e = new Fluxo\Exporter(['format' => $argv[1], 'columns' => ['n', 's'], 'total_rows' => 100000000]);
            echo $e->taskId(), "\n";
            flush();
            $n = 0;
            while (true) {
                $rows = [];
                for ($i = 0; $i < 500; $i++) {
                    $rows[] = [$n, 'row ' . $n];
                    $n++;
                }
                $e->addBatch($rows);
                usleep(2000);
            }
            PHP, [$format]);

        $id = $child->readLine();
        self::assertNotNull($id, "child printed no task id\n" . $child->stderr());
        self::assertMatchesRegularExpression(self::UUID_V7, $id);

        // wait (bounded) until the task is visibly running from this process
        $running = $this->eventually(static function () use ($id) {
            $s = Exporter::status($id);
            return $s !== null && $s->records > 0 ? $s : null;
        });
        $s = Exporter::status($id);
        self::assertNotNull($s, 'the task of a live child is known to this process');
        self::assertContains($s->state, ['QUEUED', 'PROCESSING'], 'a live owner is not reported dead: ' . json_encode(self::snapshot($s)));
        self::assertNotNull($running, 'records written by the child become visible: ' . json_encode(self::snapshot($s)));

        $child->kill(9);            // proc_terminate($p, 9): SIGKILL, no shutdown code runs
        $child->wait();             // reap it, so the pid is really gone

        $s = $this->waitForState($id, ['FAILED', 'COMPLETED', 'CANCELLED']);
        self::assertNotNull($s);
        self::assertSame('FAILED', $s->state, json_encode(self::snapshot($s)));
        self::assertIsString($s->error);
        self::assertStringContainsStringIgnoringCase('process', $s->error, 'the error mentions the dead process');
        self::assertNull($s->url);

        // reading it again (e.g. from another process) gives the same answer
        $again = ChildPhp::run(<<<'PHP'
            $s = Fluxo\Exporter::status($argv[1]);
            echo json_encode(['state' => $s?->state, 'error' => $s?->error]), "\n";
            PHP, [$id]);
        self::assertSame(0, $again->exitCode, $again->describe());
        self::assertSame('FAILED', $again->json()['state']);
        self::assertStringContainsStringIgnoringCase('process', (string) $again->json()['error']);

        // Nothing of the dead process cleans up; the next export started on
        // the host does.
        self::assertNotSame([], self::taskArtifacts($id), 'the killed child left its spool file');
        (new Exporter(['columns' => ['n']]))->cancel();
        self::assertSame([], self::taskArtifacts($id), 'the next export removes the dead task\'s spool file');
        self::assertSame('FAILED', Exporter::status($id)?->state);
    }

    public function testLiveOwnerIsNotReportedDead(): void
    {
        // The child owns an open export and waits for a line on stdin; meanwhile
        // this process reads the task's status. Then the child finishes normally.
        $child = ChildPhp::start(<<<'PHP'
            $e = new Fluxo\Exporter(['columns' => ['n']]);
            $e->addBatch([[1], [2], [3]]);
            echo $e->taskId(), "\n";
            flush();
            fgets(STDIN);
            $r = $e->finish();
            echo json_encode(['records' => $r->records, 'path' => $r->path]), "\n";
            PHP);
        $id = $child->readLine();
        self::assertNotNull($id, $child->stderr());
        $s = Exporter::status($id);
        self::assertNotNull($s);
        self::assertContains($s->state, ['QUEUED', 'PROCESSING'], json_encode(self::snapshot($s)));
        $child->writeLine('go');
        $result = $child->wait();
        self::assertSame(0, $result->exitCode, $result->describe());
        self::assertSame(3, $result->json()['records']);
        self::assertSame('COMPLETED', Exporter::status($id)?->state);
    }
}
