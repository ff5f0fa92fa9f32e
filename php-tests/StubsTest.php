<?php

declare(strict_types=1);

namespace Fluxo\Tests;

use Fluxo\Tests\Support\ChildPhp;
use Fluxo\Tests\Support\FluxoTestCase;

/**
 * php-stubs/fluxo.php is what IDEs and static analysers see: it must declare
 * the classes, methods, parameters (names too: PHP 8 calls by name), types,
 * constants and properties the extension has, no more and no fewer.
 */
final class StubsTest extends FluxoTestCase
{
    /**
     * The API of the `Fluxo` namespace as reflection sees it; runs in the
     * given PHP process so that the stubs and the extension never meet.
     */
    private const DESCRIBE = <<<'PHP'
        $api = [];
        foreach (get_declared_classes() as $name) {
            if (!str_starts_with($name, 'Fluxo\\')) {
                continue;
            }
            $class = new ReflectionClass($name);
            $type = static fn (?ReflectionType $t): ?string => $t === null ? null : (string) $t;
            $methods = [];
            foreach ($class->getMethods() as $m) {
                if ($m->getDeclaringClass()->getName() !== $name) {
                    continue;
                }
                $methods[$m->getName()] = [
                    'static' => $m->isStatic(),
                    'return' => $type($m->getReturnType()),
                    'params' => array_map(
                        static fn (ReflectionParameter $p): string => $type($p->getType()) . ' $' . $p->getName() . ($p->isOptional() ? ' = …' : ''),
                        $m->getParameters()
                    ),
                ];
            }
            ksort($methods);
            $properties = array_map(static fn (ReflectionProperty $p): string => $p->getName(), $class->getProperties());
            sort($properties);
            $constants = $class->getConstants();
            ksort($constants);
            $api[$name] = [
                'final' => $class->isFinal(),
                'parent' => $class->getParentClass() ? $class->getParentClass()->getName() : null,
                'methods' => $methods,
                'properties' => $properties,
                'constants' => $constants,
            ];
        }
        ksort($api);
        echo json_encode($api, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
        PHP;

    /**
     * @param list<string> $args php options
     * @param string $prelude code run before the description
     * @return array<string, mixed>
     */
    private static function describe(array $args, string $prelude = ''): array
    {
        $script = tempnam(sys_get_temp_dir(), 'fluxo-stubs-');
        file_put_contents($script, "<?php\n" . $prelude . self::DESCRIBE);
        $result = ChildPhp::runCommand(array_merge([PHP_BINARY, '-n'], $args, [$script]));
        unlink($script);
        self::assertSame(0, $result->exitCode, $result->describe());
        $api = json_decode($result->stdout, true);
        self::assertIsArray($api, $result->describe());
        return $api;
    }

    public function testTheStubsDeclareWhatTheExtensionHas(): void
    {
        $stubs = dirname(__DIR__) . '/php-stubs/fluxo.php';
        $declared = self::describe([], 'require ' . var_export($stubs, true) . ";\n");
        $loaded = self::describe(['-d', 'extension=' . (string) getenv('FLUXO_SO')]);
        self::assertNotEmpty($loaded, 'the extension declares Fluxo classes');
        self::assertSame(
            json_encode($loaded, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE),
            json_encode($declared, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE)
        );
    }
}
