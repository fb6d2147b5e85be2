<?php

declare(strict_types=1);

namespace Pgha\Failover;

/**
 * Thrown when a configuration is invalid. It carries EVERY problem found, not only the
 * first one, each tied to the key it concerns (e.g. "hosts[1].port").
 */
final class InvalidConfig extends \InvalidArgumentException
{
    /** @var list<array{key: string, message: string}> */
    private array $problems;

    /**
     * @param list<array{key: string, message: string}> $problems
     */
    public function __construct(array $problems, ?string $source = null)
    {
        $this->problems = array_values($problems);
        $count = count($this->problems);
        $lines = [sprintf(
            'Invalid pgsql-failover configuration%s: %d problem%s',
            $source !== null ? ' in ' . $source : '',
            $count,
            $count === 1 ? '' : 's',
        )];
        foreach ($this->problems as $p) {
            $lines[] = sprintf('  - %s: %s', $p['key'], $p['message']);
        }
        parent::__construct(implode("\n", $lines));
    }

    /**
     * @return list<array{key: string, message: string}>
     */
    public function getProblems(): array
    {
        return $this->problems;
    }

    /**
     * The distinct keys that have at least one problem, in the order found.
     *
     * @return list<string>
     */
    public function getKeys(): array
    {
        return array_values(array_unique(array_column($this->problems, 'key')));
    }
}
