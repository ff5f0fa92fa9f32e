<?php

declare(strict_types=1);

namespace Fluxo\Tests\Support;

/**
 * Outcome of a finished child php process.
 */
final class ChildResult
{
    public function __construct(
        public readonly int $exitCode,
        public readonly string $stdout,
        public readonly string $stderr
    ) {
    }

    /**
     * The last non-empty stdout line, JSON-decoded (child scripts report through it).
     *
     * @return array<mixed>
     */
    public function json(): array
    {
        $lines = preg_split('/\R/', trim($this->stdout)) ?: [];
        $last = (string) end($lines);
        $data = json_decode($last, true);
        if (!is_array($data)) {
            throw new \RuntimeException("child did not print a JSON line\n" . $this->describe());
        }
        return $data;
    }

    public function describe(): string
    {
        return sprintf(
            "exit code: %d\n--- stdout ---\n%s\n--- stderr ---\n%s",
            $this->exitCode,
            substr($this->stdout, -4000),
            substr($this->stderr, -4000)
        );
    }
}
