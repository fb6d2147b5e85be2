<?php

declare(strict_types=1);

namespace Pgha\Failover\Tests\Support;

/**
 * A PDO that needs no database: the parent constructor is never called and the few
 * methods the Connector uses are scripted.
 */
final class FakePdo extends \PDO
{
    /** @var list<string> */
    public array $executed = [];
    public ?\Throwable $execError = null;
    public bool $inTx = false;
    public bool $rolledBack = false;
    public ?\Throwable $rollBackError = null;

    /**
     * @param array<int, mixed> $options
     */
    public function __construct(
        public readonly int $id = 0,
        public readonly string $dsn = '',
        public readonly ?string $user = null,
        public readonly ?string $password = null,
        public readonly array $options = [],
    ) {
        // deliberately no parent::__construct(): no connection
    }

    public function exec(string $statement): int|false
    {
        $this->executed[] = $statement;
        if ($this->execError !== null) {
            throw $this->execError;
        }

        return 0;
    }

    public function inTransaction(): bool
    {
        return $this->inTx;
    }

    public function rollBack(): bool
    {
        if ($this->rollBackError !== null) {
            throw $this->rollBackError;
        }
        $this->rolledBack = true;
        $this->inTx = false;

        return true;
    }
}
