<?php

declare(strict_types=1);

namespace Pgha\Failover\Tests;

use Pgha\Failover\Backoff;
use Pgha\Failover\Config;
use Pgha\Failover\Connector;
use Pgha\Failover\FailoverTimeout;
use Pgha\Failover\Tests\Support\Errors;
use Pgha\Failover\Tests\Support\FakeClock;
use Pgha\Failover\Tests\Support\FakePdo;
use PHPUnit\Framework\TestCase;

final class ConnectorTest extends TestCase
{
    private FakeClock $clock;
    /** @var list<FakePdo> */
    private array $created = [];
    /** @var list<?\Throwable> what the next factory calls do: throw, or succeed (null) */
    private array $connectPlan = [];
    private ?\Throwable $alwaysFail = null;
    private int $factoryCalls = 0;
    /** @var list<float> clock value at the start of each factory call */
    private array $factoryStarts = [];
    private float $connectDuration = 0.0;
    /** @var list<array{int, float, \Throwable}> */
    private array $retries = [];

    protected function setUp(): void
    {
        $this->clock = new FakeClock(1000.0);
    }

    /**
     * @param array<string, mixed> $cfg
     */
    private function connector(array $cfg = [], ?callable $random = null, bool $pingOnReuse = true): Connector
    {
        $config = Config::fromArray($cfg + [
            'hosts' => [['host' => 'pg1', 'port' => 5432], ['host' => 'pg2', 'port' => 5432], ['host' => 'pg3', 'port' => 5432]],
            'dbname' => 'app',
            'user' => 'app_rw',
            'password' => 'pw',
        ]);

        return new Connector(
            $config,
            onRetry: function (int $attempt, float $delay, \Throwable $e): void {
                $this->retries[] = [$attempt, $delay, $e];
            },
            pdoFactory: function (string $dsn, ?string $user, ?string $password, array $options): \PDO {
                $this->factoryCalls++;
                $this->factoryStarts[] = $this->clock->now();
                $this->clock->advance($this->connectDuration);
                if ($this->alwaysFail !== null) {
                    throw $this->alwaysFail;
                }
                $next = array_shift($this->connectPlan);
                if ($next !== null) {
                    throw $next;
                }
                $pdo = new FakePdo(count($this->created) + 1, $dsn, $user, $password, $options);
                $this->created[] = $pdo;

                return $pdo;
            },
            clock: [$this->clock, 'now'],
            sleep: [$this->clock, 'sleep'],
            random: $random ?? static fn (): float => 0.5,
            pingOnReuse: $pingOnReuse,
        );
    }

    // ---- connecting ------------------------------------------------------------------

    public function testConnectPassesDsnCredentialsAndTimeout(): void
    {
        $pdo = $this->connector(['connect_timeout' => 3])->connect();

        self::assertInstanceOf(FakePdo::class, $pdo);
        self::assertStringContainsString('host=pg1,pg2,pg3;port=5432,5432,5432;', $pdo->dsn);
        self::assertStringContainsString('target_session_attrs=read-write', $pdo->dsn);
        self::assertSame('app_rw', $pdo->user);
        self::assertSame('pw', $pdo->password);
        self::assertSame(3, $pdo->options[\PDO::ATTR_TIMEOUT]);
        self::assertSame(\PDO::ERRMODE_EXCEPTION, $pdo->options[\PDO::ATTR_ERRMODE]);
        self::assertSame([], $this->clock->sleeps);
        self::assertSame([], $this->retries);
    }

    public function testConnectReadOnlyUsesPreferStandbyAndItsOwnConnection(): void
    {
        $c = $this->connector();

        $ro = $c->connectReadOnly();
        $rw = $c->connect();

        self::assertInstanceOf(FakePdo::class, $ro);
        self::assertStringContainsString('target_session_attrs=prefer-standby', $ro->dsn);
        self::assertNotSame($ro, $rw);
        self::assertSame($ro, $c->connectReadOnly(), 'cached');
    }

    public function testConnectRetriesConnectionFailuresWithBackoffAndCallsTheHook(): void
    {
        $e1 = Errors::refused('pg1');
        $e2 = Errors::connect('connection to server at "pg2", port 5432 failed: session is read-only');
        $this->connectPlan = [$e1, $e2];

        $pdo = $this->connector()->connect();

        self::assertSame(3, $this->factoryCalls);
        self::assertSame($this->created[0], $pdo);
        // random = 0.5 -> half of the ceiling: 0.5 * 0.05, 0.5 * 0.1
        self::assertEqualsWithDelta([0.025, 0.05], $this->clock->sleeps, 1e-12);
        self::assertCount(2, $this->retries);
        self::assertSame(1, $this->retries[0][0]);
        self::assertEqualsWithDelta(0.025, $this->retries[0][1], 1e-12);
        self::assertSame($e1, $this->retries[0][2]);
        self::assertSame(2, $this->retries[1][0]);
        self::assertSame($e2, $this->retries[1][2]);
    }

    public function testPermanentConnectFailureIsNotRetried(): void
    {
        $e = Errors::connect('connection to server at "pg1", port 5432 failed: FATAL:  password authentication failed for user "app_rw"');
        $this->alwaysFail = $e;

        try {
            $this->connector()->connect();
            self::fail('expected the PDOException');
        } catch (\PDOException $caught) {
            self::assertSame($e, $caught);
        }
        self::assertSame(1, $this->factoryCalls);
        self::assertSame([], $this->clock->sleeps);
        self::assertSame([], $this->retries);
    }

    public function testDriverProblemsAreNotRetried(): void
    {
        $this->alwaysFail = new \PDOException('could not find driver');

        $this->expectExceptionObject($this->alwaysFail);
        try {
            $this->connector()->connect();
        } finally {
            self::assertSame(1, $this->factoryCalls);
        }
    }

    // ---- deadline ------------------------------------------------------------------------

    public function testDeadlineIsHonouredAndTheLastErrorIsWrapped(): void
    {
        $this->alwaysFail = Errors::refused();
        $this->connectDuration = 0.2; // each connection attempt takes 200 ms
        $start = $this->clock->now();
        $c = $this->connector(['deadline' => 5], static fn (): float => 0.999);

        try {
            $c->connect();
            self::fail('expected FailoverTimeout');
        } catch (FailoverTimeout $e) {
            self::assertSame($this->alwaysFail, $e->getPrevious());
            self::assertSame($this->alwaysFail, $e->getLastError());
            self::assertSame('08006', $e->getSqlState());
            self::assertSame($this->factoryCalls, $e->attempts);
            self::assertSame(5.0, $e->deadline);
            self::assertStringContainsString('Connection refused', $e->getMessage());
        }

        $deadline = $start + 5.0;
        self::assertGreaterThan(5, $this->factoryCalls);
        foreach ($this->factoryStarts as $t) {
            self::assertLessThan($deadline, $t, 'no attempt starts after the deadline');
        }
        // Time only passes in attempts (0.2 s each) and sleeps: the last attempt started
        // before the deadline, so we gave up at most one attempt's duration after it.
        self::assertEqualsWithDelta($this->clock->now() - $start, array_sum($this->clock->sleeps) + 0.2 * $this->factoryCalls, 1e-9);
        self::assertLessThanOrEqual($deadline + 0.2, $this->clock->now());
        self::assertCount($this->factoryCalls - 1, $this->clock->sleeps);
        self::assertCount($this->factoryCalls - 1, $this->retries);
        $backoff = new Backoff(0.05, 1.0);
        foreach ($this->clock->sleeps as $i => $delay) {
            self::assertGreaterThanOrEqual(0.0, $delay);
            self::assertLessThanOrEqual($backoff->ceiling($i + 1), $delay);
            self::assertSame($delay, $this->retries[$i][1], 'hook gets the real delay');
            self::assertSame($i + 1, $this->retries[$i][0], 'hook gets the attempt number');
        }
        self::assertEqualsWithDelta(0.999, max($this->clock->sleeps), 1e-9, 'delays grow to the cap');
    }

    public function testDeadlineWithZeroJitterStillEnds(): void
    {
        $this->alwaysFail = Errors::refused();
        $this->connectDuration = 0.5;

        $this->expectException(FailoverTimeout::class);
        try {
            $this->connector(['deadline' => 3], static fn (): float => 0.0)->connect();
        } finally {
            self::assertSame(6, $this->factoryCalls, 'attempts at t=0, 0.5, 1, 1.5, 2, 2.5');
            self::assertSame(1003.0, $this->clock->now());
        }
    }

    public function testAnAttemptThatWouldStartAfterTheDeadlineIsNotMade(): void
    {
        // 1st attempt fails at t=0.9; the next delay (0.999 * 0.05) would end at 0.95 < 1
        // -> second attempt; it fails at t~1.85 > deadline -> give up without sleeping.
        $this->alwaysFail = Errors::refused();
        $this->connectDuration = 0.9;

        try {
            $this->connector(['deadline' => 1], static fn (): float => 0.999)->connect();
            self::fail('expected FailoverTimeout');
        } catch (FailoverTimeout $e) {
            self::assertSame(2, $e->attempts);
            self::assertEqualsWithDelta(1.84995, $e->elapsed, 1e-9);
        }
        self::assertCount(1, $this->clock->sleeps);
    }

    // ---- run(): idempotency --------------------------------------------------------------

    public function testNonIdempotentWorkIsNotRetriedAfterTheStatementWasSent(): void
    {
        $c = $this->connector();
        $error = Errors::adminShutdown();
        $calls = 0;

        try {
            $c->run(static function (\PDO $pdo) use (&$calls, $error): never {
                $calls++;
                throw $error;
            });
            self::fail('expected the original exception');
        } catch (\PDOException $caught) {
            self::assertSame($error, $caught, 'rethrown as is, not wrapped');
        }
        self::assertSame(1, $calls);
        self::assertSame([], $this->retries);
        self::assertSame([], $this->clock->sleeps);

        // The broken connection was dropped: the next run reconnects.
        self::assertSame('ok', $c->run(static fn (\PDO $pdo): string => 'ok'));
        self::assertSame(2, $this->factoryCalls);
    }

    public function testNonIdempotentWorkIsRetriedWhenConnectingFailed(): void
    {
        $this->connectPlan = [Errors::refused(), Errors::refused()];
        $calls = 0;

        $result = $this->connector()->run(static function (\PDO $pdo) use (&$calls): int {
            $calls++;

            return 42;
        });

        self::assertSame(42, $result);
        self::assertSame(1, $calls, 'the statement ran exactly once');
        self::assertSame(3, $this->factoryCalls);
        self::assertCount(2, $this->retries);
    }

    public function testIdempotentWorkIsRetriedAfterFailoverErrors(): void
    {
        $errors = [Errors::adminShutdown(), Errors::statement('25006', 'ERROR:  cannot execute INSERT in a read-only transaction')];
        $seen = [];

        $result = $this->connector()->run(static function (\PDO $pdo) use (&$errors, &$seen): string {
            \assert($pdo instanceof FakePdo);
            $seen[] = $pdo->id;
            $e = array_shift($errors);
            if ($e !== null) {
                throw $e;
            }

            return 'done';
        }, idempotent: true);

        self::assertSame('done', $result);
        self::assertSame([1, 2, 3], $seen, 'a fresh connection for every attempt');
        self::assertCount(2, $this->retries);
        self::assertSame('HY000', $this->retries[0][2]->errorInfo[0]);
        self::assertSame('25006', $this->retries[1][2]->errorInfo[0]);
    }

    public function testIdempotentWorkStopsAtTheDeadline(): void
    {
        $error = Errors::statement('57P03', 'FATAL:  the database system is starting up');
        $c = $this->connector(['deadline' => 2]);
        $calls = 0;

        try {
            $c->run(function (\PDO $pdo) use (&$calls, $error): never {
                $calls++;
                $this->clock->advance(0.3);
                throw $error;
            }, idempotent: true);
            self::fail('expected FailoverTimeout');
        } catch (FailoverTimeout $e) {
            self::assertSame($error, $e->getPrevious());
            self::assertSame($calls, $e->attempts);
        }
        self::assertGreaterThan(1, $calls);
        self::assertLessThanOrEqual(1002.0 + 0.3, $this->clock->now());
    }

    /**
     * @return iterable<string, array{\Throwable}>
     */
    public static function nonFailoverErrors(): iterable
    {
        yield 'serialization failure' => [Errors::statement('40001', 'ERROR:  could not serialize access')];
        yield 'unique violation' => [Errors::statement('23505', 'ERROR:  duplicate key value')];
        yield 'query canceled' => [Errors::statement('57014', 'ERROR:  canceling statement due to statement timeout')];
        yield 'application exception' => [new \DomainException('business rule')];
    }

    /**
     * @dataProvider nonFailoverErrors
     */
    public function testOtherErrorsAreRethrownImmediatelyEvenWhenIdempotent(\Throwable $error): void
    {
        $c = $this->connector();
        $calls = 0;

        try {
            $c->run(static function (\PDO $pdo) use (&$calls, $error): never {
                $calls++;
                throw $error;
            }, idempotent: true);
            self::fail('expected the original exception');
        } catch (\Throwable $caught) {
            self::assertSame($error, $caught);
        }
        self::assertSame(1, $calls);
        self::assertSame([], $this->retries);

        // The connection is healthy and is kept.
        $c->run(static fn (\PDO $pdo) => null);
        self::assertSame(1, $this->factoryCalls);
    }

    public function testOpenTransactionIsRolledBackAfterAnOrdinaryError(): void
    {
        $c = $this->connector();
        $pdo = $c->connect();
        \assert($pdo instanceof FakePdo);

        try {
            $c->run(static function (\PDO $pdo): never {
                \assert($pdo instanceof FakePdo);
                $pdo->inTx = true;
                throw Errors::statement('23505', 'ERROR:  duplicate key value');
            });
        } catch (\PDOException) {
        }

        self::assertTrue($pdo->rolledBack);
        self::assertSame($pdo, $c->connect(), 'kept after a successful rollback');
    }

    public function testConnectionIsDroppedWhenRollbackFails(): void
    {
        $c = $this->connector();
        $first = $c->connect();
        \assert($first instanceof FakePdo);
        $first->rollBackError = Errors::statement('HY000', 'no connection to the server');

        try {
            $c->run(static function (\PDO $pdo): never {
                \assert($pdo instanceof FakePdo);
                $pdo->inTx = true;
                throw new \LogicException('bug');
            });
        } catch (\LogicException) {
        }

        self::assertNotSame($first, $c->connect());
        self::assertSame(2, $this->factoryCalls);
    }

    // ---- reuse -------------------------------------------------------------------------

    public function testStaleConnectionIsReplacedBeforeTheStatementIsSent(): void
    {
        $c = $this->connector();
        $first = $c->connect();
        \assert($first instanceof FakePdo);
        $first->execError = Errors::statement('HY000', 'no connection to the server'); // killed by a failover
        $used = [];

        $c->run(static function (\PDO $pdo) use (&$used): void {
            $used[] = $pdo;
        }); // not idempotent, still fine: the ping failed, not the statement

        self::assertSame(['SELECT 1'], $first->executed);
        self::assertCount(1, $used);
        self::assertNotSame($first, $used[0]);
        self::assertSame([], $this->retries, 'no backoff for a stale connection');
    }

    public function testHealthyConnectionIsReusedAfterAPing(): void
    {
        $c = $this->connector();
        $first = $c->connect();
        \assert($first instanceof FakePdo);

        $c->run(static fn (\PDO $pdo) => null);
        $c->run(static fn (\PDO $pdo) => null);

        self::assertSame(['SELECT 1', 'SELECT 1'], $first->executed);
        self::assertSame(1, $this->factoryCalls);
    }

    public function testPingCanBeDisabled(): void
    {
        $c = $this->connector(pingOnReuse: false);
        $first = $c->connect();
        \assert($first instanceof FakePdo);

        $c->run(static fn (\PDO $pdo) => null);

        self::assertSame([], $first->executed);
    }

    public function testCloseDropsConnections(): void
    {
        $c = $this->connector();
        $first = $c->connect();

        $c->close();

        self::assertNotSame($first, $c->connect());
    }

    public function testPersistentConnectionsAreRefused(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        new Connector(
            Config::fromArray(['hosts' => [['host' => 'pg1']], 'dbname' => 'a', 'user' => 'u']),
            pdoOptions: [\PDO::ATTR_PERSISTENT => true],
        );
    }

    public function testHookExceptionsPropagate(): void
    {
        $this->connectPlan = [Errors::refused()];
        $boom = new \RuntimeException('metrics backend down');
        $c = new Connector(
            Config::fromArray(['hosts' => [['host' => 'pg1']], 'dbname' => 'a', 'user' => 'u']),
            onRetry: static function () use ($boom): never {
                throw $boom;
            },
            pdoFactory: function (): \PDO {
                $next = array_shift($this->connectPlan);
                if ($next !== null) {
                    throw $next;
                }

                return new FakePdo();
            },
            clock: [$this->clock, 'now'],
            sleep: [$this->clock, 'sleep'],
        );

        $this->expectExceptionObject($boom);
        $c->connect();
    }
}
