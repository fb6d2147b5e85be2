<?php

declare(strict_types=1);

namespace Pgha\Failover;

/**
 * One PostgreSQL node: a TCP host (DNS name or IP literal) and a port.
 *
 * Instances are only created by {@see Config::fromArray()}, which validates both fields.
 */
final class Host
{
    public function __construct(
        public readonly string $host,
        public readonly int $port,
    ) {
    }

    public function __toString(): string
    {
        return str_contains($this->host, ':')
            ? '[' . $this->host . ']:' . $this->port
            : $this->host . ':' . $this->port;
    }
}
