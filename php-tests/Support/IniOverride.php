<?php

declare(strict_types=1);

namespace Fluxo\Tests\Support;

/**
 * ini_set() for the length of one test: set() remembers each entry's value the
 * first time it is touched, restore() puts every one of them back.
 */
final class IniOverride
{
    /** @var array<string, string> */
    private array $saved = [];

    /**
     * @param array<string, string|int> $values
     */
    public function set(array $values): void
    {
        foreach ($values as $key => $value) {
            if (!array_key_exists($key, $this->saved)) {
                $old = ini_get($key);
                if ($old === false) {
                    throw new \RuntimeException(
                        "ini entry {$key} is not registered: is the extension built with storage support?"
                    );
                }
                $this->saved[$key] = $old;
            }
            if (ini_set($key, (string) $value) === false) {
                throw new \RuntimeException("ini_set('{$key}') failed: is it registered as PHP_INI_ALL?");
            }
        }
    }

    public function restore(): void
    {
        foreach ($this->saved as $key => $value) {
            ini_set($key, $value);
        }
        $this->saved = [];
    }
}
