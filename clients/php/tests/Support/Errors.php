<?php

declare(strict_types=1);

namespace Pgha\Failover\Tests\Support;

/** PDOExceptions shaped like the ones pdo_pgsql throws (checked against a real server). */
final class Errors
{
    /** An error raised while executing a statement. */
    public static function statement(string $sqlstate, string $detail): \PDOException
    {
        $e = new \PDOException(sprintf('SQLSTATE[%s]: General error: 7 %s', $sqlstate, $detail));
        $e->errorInfo = [$sqlstate, 7, $detail];

        return $e;
    }

    /** A failed `new PDO(...)`: pdo_pgsql always reports 08006 with libpq's message. */
    public static function connect(string $detail): \PDOException
    {
        $e = new \PDOException(sprintf('SQLSTATE[08006] [7] %s', $detail), 7);
        $e->errorInfo = ['08006', 7, $detail];

        return $e;
    }

    public static function refused(string $host = '10.0.0.1', int $port = 5432): \PDOException
    {
        return self::connect(sprintf(
            "connection to server at \"%s\", port %d failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?",
            $host,
            $port,
        ));
    }

    /** What pdo_pgsql reports when the backend was terminated (pg_terminate_backend, shutdown). */
    public static function adminShutdown(): \PDOException
    {
        return self::statement('HY000', "FATAL:  terminating connection due to administrator command\n"
            . "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n"
            . "\tbefore or while processing the request.");
    }
}
