<?php

declare(strict_types=1);

namespace Pgha\Failover;

/**
 * The total deadline of a connect()/run() call passed while failover errors kept
 * happening. getPrevious() is the last error seen.
 */
final class FailoverTimeout extends \RuntimeException
{
    public function __construct(
        public readonly int $attempts,
        public readonly float $elapsed,
        public readonly float $deadline,
        \Throwable $lastError,
    ) {
        parent::__construct(
            sprintf(
                'gave up after the %.3gs failover deadline: %d attempt%s in %.3fs; last error: %s',
                $deadline,
                $attempts,
                $attempts === 1 ? '' : 's',
                $elapsed,
                $lastError->getMessage(),
            ),
            0,
            $lastError,
        );
    }

    public function getLastError(): \Throwable
    {
        $previous = $this->getPrevious();
        assert($previous !== null);

        return $previous;
    }

    /** SQLSTATE of the last error, when it was a PDOException. */
    public function getSqlState(): ?string
    {
        return ErrorClassifier::sqlState($this->getLastError());
    }
}
