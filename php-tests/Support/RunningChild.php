<?php

declare(strict_types=1);

namespace Fluxo\Tests\Support;

/**
 * A child php process that is still running: read its stdout line by line,
 * signal it, wait for it.
 */
final class RunningChild
{
    /** @var resource|null */
    private $process;

    /** @var resource|null */
    private $stdin;

    /** @var resource */
    private $stdout;

    private string $stdoutSoFar = '';

    public readonly int $pid;

    /**
     * @param resource $process
     * @param resource $stdin
     * @param resource $stdout
     */
    public function __construct($process, $stdin, $stdout, private readonly string $stderrFile)
    {
        $this->process = $process;
        $this->stdin = $stdin;
        $this->stdout = $stdout;
        $status = proc_get_status($process);
        $this->pid = (int) $status['pid'];
    }

    /**
     * Blocks until the child prints a line; null on EOF (child ended).
     */
    public function readLine(): ?string
    {
        $line = fgets($this->stdout);
        if ($line === false) {
            return null;
        }
        $this->stdoutSoFar .= $line;
        return rtrim($line, "\r\n");
    }

    /**
     * Writes a line to the child's stdin (the child reads it with fgets(STDIN)).
     */
    public function writeLine(string $line): void
    {
        if ($this->stdin === null) {
            throw new \LogicException('stdin already closed');
        }
        fwrite($this->stdin, $line . "\n");
        fflush($this->stdin);
    }

    private function closeStdin(): void
    {
        if ($this->stdin !== null) {
            @fclose($this->stdin);
            $this->stdin = null;
        }
    }

    /**
     * Sends $signal (9 = SIGKILL) to the child.
     */
    public function kill(int $signal = 9): void
    {
        if ($this->process !== null) {
            proc_terminate($this->process, $signal);
        }
    }

    /**
     * Waits for the child to end (and reaps it, so it is no longer a zombie).
     */
    public function wait(): ChildResult
    {
        if ($this->process === null) {
            throw new \LogicException('child already waited for');
        }
        $this->closeStdin();
        $rest = stream_get_contents($this->stdout);
        fclose($this->stdout);
        $code = proc_close($this->process);
        $this->process = null;
        $stderr = (string) @file_get_contents($this->stderrFile);
        return new ChildResult($code, $this->stdoutSoFar . (string) $rest, $stderr);
    }

    public function stderr(): string
    {
        return (string) @file_get_contents($this->stderrFile);
    }

    public function __destruct()
    {
        if ($this->process !== null) {
            proc_terminate($this->process, 9);
            $this->closeStdin();
            @fclose($this->stdout);
            proc_close($this->process);
            $this->process = null;
        }
    }
}
