<?php

declare(strict_types=1);

namespace Fluxo\Tests\Support;

/**
 * A process started without a shell (proc_open with an argv list, so pid is the
 * program itself), stdout and stderr going to files. Every wait is bounded;
 * the process is killed when this object goes away.
 */
final class BackgroundProcess
{
    /** @var resource|null */
    private $process;

    public readonly int $pid;

    private ?int $exitCode = null;

    /**
     * @param list<string>              $command
     * @param array<string, string>|null $env full environment (null = inherit)
     */
    public function __construct(
        array $command,
        public readonly string $stdoutFile,
        public readonly string $stderrFile,
        ?array $env = null
    ) {
        $process = proc_open(
            $command,
            [0 => ['file', '/dev/null', 'r'], 1 => ['file', $stdoutFile, 'w'], 2 => ['file', $stderrFile, 'w']],
            $pipes,
            null,
            $env
        );
        if (!is_resource($process)) {
            throw new \RuntimeException('cannot start ' . implode(' ', $command));
        }
        $this->process = $process;
        $this->pid = (int) proc_get_status($process)['pid'];
    }

    public function isRunning(): bool
    {
        if ($this->process === null) {
            return false;
        }
        $status = proc_get_status($this->process);
        if ($status['running']) {
            return true;
        }
        if ($this->exitCode === null) {
            $this->exitCode = $status['signaled'] ? 128 + (int) $status['termsig'] : (int) $status['exitcode'];
        }
        return false;
    }

    public function signal(int $signal): void
    {
        if ($this->process !== null && $this->isRunning()) {
            proc_terminate($this->process, $signal);
        }
    }

    /**
     * Waits up to $seconds for the process to end; its exit code (128 + signal when
     * killed by one), or null when it is still running.
     */
    public function waitFor(float $seconds): ?int
    {
        $deadline = microtime(true) + $seconds;
        while ($this->isRunning()) {
            if (microtime(true) >= $deadline) {
                return null;
            }
            usleep(20000);
        }
        if ($this->process !== null) {
            proc_close($this->process);
            $this->process = null;
        }
        return $this->exitCode;
    }

    /** Kills the process (SIGKILL) and reaps it. */
    public function stop(): void
    {
        if ($this->process === null) {
            return;
        }
        $this->signal(9);
        $this->waitFor(10.0);
    }

    public function stdout(): string
    {
        return (string) @file_get_contents($this->stdoutFile);
    }

    public function stderr(): string
    {
        return (string) @file_get_contents($this->stderrFile);
    }

    /**
     * The first stdout line that is a JSON object, waiting up to $seconds for it
     * (null when none came, or the process ended without one).
     *
     * @return array<mixed>|null
     */
    public function waitForJsonLine(float $seconds): ?array
    {
        $deadline = microtime(true) + $seconds;
        do {
            $running = $this->isRunning();
            foreach (preg_split('/\R/', $this->stdout()) ?: [] as $line) {
                $data = json_decode($line, true);
                if (is_array($data)) {
                    return $data;
                }
            }
            if (!$running) {
                return null;
            }
            usleep(20000);
        } while (microtime(true) < $deadline);
        return null;
    }

    /**
     * The last stdout line that is a JSON object.
     *
     * @return array<mixed>|null
     */
    public function lastJsonLine(): ?array
    {
        $lines = preg_split('/\R/', trim($this->stdout())) ?: [];
        for ($i = count($lines) - 1; $i >= 0; $i--) {
            $data = json_decode($lines[$i], true);
            if (is_array($data)) {
                return $data;
            }
        }
        return null;
    }

    public function describe(): string
    {
        return sprintf(
            "pid %d, exit code %s\n--- stdout ---\n%s\n--- stderr ---\n%s",
            $this->pid,
            $this->exitCode === null ? 'n/a' : (string) $this->exitCode,
            substr($this->stdout(), -3000),
            substr($this->stderr(), -3000)
        );
    }

    public function __destruct()
    {
        $this->stop();
    }
}
