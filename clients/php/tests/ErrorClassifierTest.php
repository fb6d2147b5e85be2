<?php

declare(strict_types=1);

namespace Pgha\Failover\Tests;

use Pgha\Failover\ErrorClassifier;
use Pgha\Failover\Tests\Support\Errors;
use PHPUnit\Framework\TestCase;

final class ErrorClassifierTest extends TestCase
{
    /**
     * @return iterable<string, array{string, bool}>
     */
    public static function sqlStates(): iterable
    {
        // failover: connection exceptions (class 08), shutdown / not accepting, read-only
        foreach (['08000', '08001', '08003', '08004', '08006', '08007', '08P01'] as $s) {
            yield $s => [$s, true];
        }
        yield '57P01 admin_shutdown' => ['57P01', true];
        yield '57P02 crash_shutdown' => ['57P02', true];
        yield '57P03 cannot_connect_now' => ['57P03', true];
        yield '25006 read_only_sql_transaction' => ['25006', true];
        // not failover
        yield '40001 serialization_failure' => ['40001', false];
        yield '40P01 deadlock_detected' => ['40P01', false];
        yield '57014 query_canceled' => ['57014', false];
        yield '57P04 database_dropped' => ['57P04', false];
        yield '23505 unique_violation' => ['23505', false];
        yield '42P01 undefined_table' => ['42P01', false];
        yield '22012 division_by_zero' => ['22012', false];
        yield '25P02 in_failed_sql_transaction' => ['25P02', false];
        yield '53300 too_many_connections' => ['53300', false];
        yield 'HY000 generic' => ['HY000', false];
    }

    /**
     * @dataProvider sqlStates
     */
    public function testClassificationBySqlState(string $state, bool $failover): void
    {
        $e = Errors::statement($state, 'ERROR:  something');

        self::assertSame($state, ErrorClassifier::sqlState($e));
        self::assertSame($failover, ErrorClassifier::isFailover($e));
    }

    /**
     * @return iterable<string, array{string, bool}>
     */
    public static function hy000Messages(): iterable
    {
        yield 'server closed' => ["server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally", true];
        yield 'no connection' => ['no connection to the server', true];
        yield 'admin shutdown FATAL' => ['FATAL:  terminating connection due to administrator command', true];
        yield 'ssl syscall' => ['SSL SYSCALL error: EOF detected', true];
        yield 'ssl closed' => ['SSL connection has been closed unexpectedly', true];
        yield 'could not receive' => ['could not receive data from server: Connection reset by peer', true];
        yield 'could not send' => ['could not send data to server: Broken pipe', true];
        yield 'shutting down' => ['FATAL:  the database system is shutting down', true];
        yield 'starting up' => ['FATAL:  the database system is starting up', true];
        yield 'crash' => ['FATAL:  terminating connection because of crash of another server process', true];
        yield 'plain error' => ['ERROR:  relation "t" does not exist', false];
        yield 'unrelated' => ['General error', false];
    }

    /**
     * @dataProvider hy000Messages
     */
    public function testHy000IsClassifiedByMessage(string $detail, bool $failover): void
    {
        self::assertSame($failover, ErrorClassifier::isFailover(Errors::statement('HY000', $detail)));
    }

    public function testRealAdminShutdownShape(): void
    {
        $e = Errors::adminShutdown();

        self::assertSame('HY000', ErrorClassifier::sqlState($e));
        self::assertTrue(ErrorClassifier::isFailover($e));
    }

    public function testMessagesAreIgnoredForOrdinarySqlStates(): void
    {
        // The data of a unique violation must not turn it into a failover error.
        $e = Errors::statement('23505', 'ERROR:  duplicate key value violates unique constraint "u"
DETAIL:  Key (note)=(server closed the connection unexpectedly) already exists.');

        self::assertFalse(ErrorClassifier::isFailover($e));
    }

    public function testConstructorFailureIsFailover(): void
    {
        $e = Errors::refused();

        self::assertSame('08006', ErrorClassifier::sqlState($e));
        self::assertTrue(ErrorClassifier::isFailover($e));
        self::assertFalse(ErrorClassifier::isPermanentConnectFailure($e));
    }

    public function testSqlStateFromMessageWhenErrorInfoIsMissing(): void
    {
        $e = new \PDOException('SQLSTATE[57P01]: Admin shutdown: 7 FATAL:  terminating connection');

        self::assertSame('57P01', ErrorClassifier::sqlState($e));
        self::assertTrue(ErrorClassifier::isFailover($e));
    }

    public function testPdoExceptionWithoutSqlState(): void
    {
        $e = new \PDOException('could not find driver');

        self::assertNull(ErrorClassifier::sqlState($e));
        self::assertFalse(ErrorClassifier::isFailover($e));
    }

    public function testWrappedPdoExceptionIsFound(): void
    {
        $wrapped = new \RuntimeException('query failed', 0, Errors::statement('57P01', 'FATAL:  terminating connection'));

        self::assertSame('57P01', ErrorClassifier::sqlState($wrapped));
        self::assertTrue(ErrorClassifier::isFailover($wrapped));
    }

    public function testNonPdoExceptionsAreNotFailover(): void
    {
        self::assertFalse(ErrorClassifier::isFailover(new \RuntimeException('server closed the connection unexpectedly')));
        self::assertNull(ErrorClassifier::sqlState(new \RuntimeException('SQLSTATE[08006]')));
        self::assertFalse(ErrorClassifier::isPermanentConnectFailure(new \RuntimeException('password authentication failed')));
    }

    /**
     * @return iterable<string, array{string, bool}>
     */
    public static function connectFailures(): iterable
    {
        $host = static fn (string $h, string $why): string => "connection to server at \"$h\", port 5432 failed: $why\n";
        yield 'refused' => [$host('10.0.0.1', 'Connection refused'), false];
        yield 'timeout' => [$host('10.0.0.1', 'timeout expired'), false];
        yield 'read-only' => [$host('10.0.0.1', 'session is read-only'), false];
        yield 'starting up' => [$host('10.0.0.1', 'FATAL:  the database system is starting up'), false];
        yield 'dns' => ['could not translate host name "pg9" to address: Name or service not known', false];
        yield 'bad password' => [$host('10.0.0.1', 'FATAL:  password authentication failed for user "app"'), true];
        yield 'pg_hba' => [$host('10.0.0.1', 'FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "app", database "app", SSL encryption'), true];
        yield 'no database' => [$host('10.0.0.1', 'FATAL:  database "ap" does not exist'), true];
        yield 'cert mismatch' => [$host('10.0.0.1', 'server certificate for "x" does not match host name "10.0.0.1"'), true];
        yield 'no root cert' => ['root certificate file "/root/.postgresql/root.crt" does not exist', true];
        yield 'bad option' => ['invalid sslmode value: "bogus"', true];
        yield 'all hosts permanent' => [
            $host('10.0.0.1', 'FATAL:  password authentication failed for user "app"')
            . $host('10.0.0.2', 'FATAL:  password authentication failed for user "app"'),
            true,
        ];
        yield 'one host permanent, one transient' => [
            $host('10.0.0.1', 'FATAL:  no pg_hba.conf entry for host "10.0.0.9"')
            . $host('10.0.0.2', 'Connection refused'),
            false,
        ];
    }

    /**
     * @dataProvider connectFailures
     */
    public function testPermanentConnectFailures(string $detail, bool $permanent): void
    {
        $e = Errors::connect($detail);

        self::assertTrue(ErrorClassifier::isFailover($e), 'every failed connection is 08006');
        self::assertSame($permanent, ErrorClassifier::isPermanentConnectFailure($e));
    }

    public function testPermanentWithoutErrorInfoUsesTheMessage(): void
    {
        $e = new \PDOException('SQLSTATE[08006] [7] FATAL:  password authentication failed for user "app"');

        self::assertTrue(ErrorClassifier::isPermanentConnectFailure($e));
    }
}
