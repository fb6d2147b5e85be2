<?php

declare(strict_types=1);

namespace Pgha\Failover\Tests\Integration;

use Pgha\Failover\Config;
use Pgha\Failover\Connector;
use Pgha\Failover\DsnBuilder;
use Pgha\Failover\ErrorClassifier;
use PHPUnit\Framework\TestCase;

/**
 * Optional: runs against a real server/cluster when PGHA_PHP_TEST_CONFIG names a config
 * file (the user must be allowed to pg_terminate_backend() its own sessions, which any
 * role may do). Skipped otherwise.
 *
 *   PGHA_PHP_TEST_CONFIG=/path/pg.json phpunit -c clients/php/phpunit.xml --testsuite integration
 *
 * @requires extension pdo_pgsql
 */
final class LiveClusterTest extends TestCase
{
    private Config $config;
    /** @var list<array{int, float, \Throwable}> */
    private array $retries = [];

    protected function setUp(): void
    {
        $path = getenv('PGHA_PHP_TEST_CONFIG');
        if ($path === false || $path === '') {
            self::markTestSkipped('set PGHA_PHP_TEST_CONFIG to a config file to run against a real cluster');
        }
        $this->config = Config::fromJsonFile($path);
    }

    private function connector(bool $pingOnReuse = true): Connector
    {
        return new Connector(
            $this->config,
            onRetry: function (int $attempt, float $delay, \Throwable $e): void {
                $this->retries[] = [$attempt, $delay, $e];
            },
            pingOnReuse: $pingOnReuse,
        );
    }

    /** Terminates the backend behind $pdo from another session, and waits until it is gone. */
    private function terminate(\PDO $pdo): int
    {
        $pid = (int) $pdo->query('SELECT pg_backend_pid()')->fetchColumn();
        $killer = new \PDO(DsnBuilder::build($this->config), $this->config->user, $this->config->password(), DsnBuilder::pdoOptions($this->config));
        self::assertTrue((bool) $killer->query("SELECT pg_terminate_backend($pid)")->fetchColumn());
        for ($i = 0; $i < 100; $i++) {
            if ((int) $killer->query("SELECT count(*) FROM pg_stat_activity WHERE pid = $pid")->fetchColumn() === 0) {
                return $pid;
            }
            usleep(20000);
        }
        self::fail("backend $pid did not go away");
    }

    public function testConnectReachesThePrimary(): void
    {
        $pdo = $this->connector()->connect();

        self::assertFalse((bool) $pdo->query('SELECT pg_is_in_recovery()')->fetchColumn());
    }

    public function testReadOnlyConnectionWorks(): void
    {
        $c = $this->connector();

        self::assertSame(1, (int) $c->runReadOnly(static fn (\PDO $pdo) => $pdo->query('SELECT 1')->fetchColumn()));
    }

    public function testRealStatementErrorsAreNotFailover(): void
    {
        try {
            $this->connector()->run(static fn (\PDO $pdo) => $pdo->query('SELECT 1/0'), idempotent: true);
            self::fail('expected division by zero');
        } catch (\PDOException $e) {
            self::assertSame('22012', ErrorClassifier::sqlState($e));
            self::assertFalse(ErrorClassifier::isFailover($e));
        }
        self::assertSame([], $this->retries);
    }

    public function testKilledIdleConnectionIsReplacedByThePing(): void
    {
        $c = $this->connector();
        $oldPid = $this->terminate($c->connect());

        $newPid = (int) $c->run(static fn (\PDO $pdo) => $pdo->query('SELECT pg_backend_pid()')->fetchColumn());

        self::assertNotSame($oldPid, $newPid);
        self::assertSame([], $this->retries);
    }

    public function testKilledConnectionWithoutPing(): void
    {
        $c = $this->connector(pingOnReuse: false);
        $this->terminate($c->connect());

        // Not idempotent: the real pdo_pgsql error is recognised as failover and rethrown.
        try {
            $c->run(static fn (\PDO $pdo) => $pdo->query('SELECT 1')->fetchColumn());
            self::fail('expected the lost-connection error');
        } catch (\PDOException $e) {
            self::assertTrue(ErrorClassifier::isFailover($e), $e->getMessage());
        }
        self::assertSame([], $this->retries);

        // Idempotent: retried once on a new connection.
        $this->terminate($c->connect());
        self::assertSame(1, (int) $c->run(static fn (\PDO $pdo) => $pdo->query('SELECT 1')->fetchColumn(), idempotent: true));
        self::assertCount(1, $this->retries);
        self::assertTrue(ErrorClassifier::isFailover($this->retries[0][2]));
    }
}
