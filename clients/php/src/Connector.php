<?php

declare(strict_types=1);

namespace Pgha\Failover;

/**
 * Failover-aware access to a Patroni cluster through PDO.
 *
 *   $db = new Connector(Config::fromJsonFile('/etc/app/pg.json'));
 *   $id = $db->run(function (PDO $pdo) {               // not idempotent: retried only if
 *       $st = $pdo->prepare('INSERT ... RETURNING id'); // the failure happened while
 *       $st->execute([...]);                            // connecting
 *       return $st->fetchColumn();
 *   });
 *   $n = $db->run(fn (PDO $pdo) => $pdo->query('SELECT count(*) FROM t')->fetchColumn(),
 *                 idempotent: true);                    // retried after any failover error
 *
 * One call (connect(), run(), ...) makes attempts until it succeeds, hits an error that is
 * not failover-related (rethrown as is), hits a failover error it may not retry (rethrown
 * as is), or runs out of its total deadline (FailoverTimeout wrapping the last error).
 * Between attempts it sleeps a capped, fully jittered exponential backoff. It never sleeps
 * past the deadline and never starts an attempt after it; an attempt that is already
 * running is not interrupted (one connect attempt can take up to
 * hosts x connect_timeout seconds, a statement as long as the statement takes).
 *
 * Not thread-safe / not shareable between processes (PDO connections are not either).
 */
final class Connector
{
    private ?\PDO $primary = null;
    private ?\PDO $readOnly = null;

    private Backoff $backoff;
    /** @var \Closure(string, ?string, ?string, array<int, mixed>): \PDO */
    private \Closure $pdoFactory;
    /** @var \Closure(): float */
    private \Closure $clock;
    /** @var \Closure(float): void */
    private \Closure $sleep;
    /** @var (\Closure(int, float, \Throwable): void)|null */
    private ?\Closure $onRetry;
    /** @var array<int, mixed> */
    private array $pdoOptions;

    /**
     * @param Config             $config
     * @param callable|null      $onRetry     fn(int $attempt, float $delay, \Throwable $error): void,
     *                                        called before sleeping $delay seconds after failed
     *                                        attempt number $attempt (1-based); for logging/metrics.
     *                                        Exceptions it throws propagate.
     * @param callable|null      $pdoFactory  fn(string $dsn, ?string $user, ?string $password, array $options): PDO
     *                                        (default: new PDO(...)); injectable for tests
     * @param callable|null      $clock       fn(): float, monotonic seconds (default: hrtime)
     * @param callable|null      $sleep       fn(float $seconds): void (default: usleep)
     * @param callable|null      $random      fn(): float in [0, 1) for the jitter
     * @param bool               $pingOnReuse before reusing a cached connection, run "SELECT 1"
     *                                        on it; if that fails, replace it silently. This
     *                                        turns "stale connection after a failover" into a
     *                                        connect-time failure, which is safe to retry even
     *                                        for non-idempotent work. Costs one round trip.
     * @param array<int, mixed>  $pdoOptions  extra PDO attributes (ATTR_ERRMODE and ATTR_TIMEOUT
     *                                        are always forced; ATTR_PERSISTENT is refused)
     */
    public function __construct(
        private readonly Config $config,
        ?callable $onRetry = null,
        ?callable $pdoFactory = null,
        ?callable $clock = null,
        ?callable $sleep = null,
        ?callable $random = null,
        private readonly bool $pingOnReuse = true,
        array $pdoOptions = [],
    ) {
        if (!empty($pdoOptions[\PDO::ATTR_PERSISTENT])) {
            throw new \InvalidArgumentException('PDO::ATTR_PERSISTENT is not supported: a persistent handle can outlive a failover');
        }
        $this->pdoOptions = array_replace($pdoOptions, DsnBuilder::pdoOptions($config));
        $this->backoff = Backoff::fromConfig($config, $random);
        $this->onRetry = $onRetry !== null ? \Closure::fromCallable($onRetry) : null;
        $this->pdoFactory = $pdoFactory !== null
            ? \Closure::fromCallable($pdoFactory)
            : static fn (string $dsn, ?string $user, #[\SensitiveParameter] ?string $password, array $options): \PDO => new \PDO($dsn, $user, $password, $options);
        $this->clock = $clock !== null
            ? \Closure::fromCallable($clock)
            : static fn (): float => hrtime(true) / 1e9;
        $this->sleep = $sleep !== null
            ? \Closure::fromCallable($sleep)
            : static function (float $seconds): void {
                if ($seconds > 0) {
                    usleep((int) round($seconds * 1e6));
                }
            };
    }

    public function config(): Config
    {
        return $this->config;
    }

    /** The DSN used for primary (read-write) or read-only connections. */
    public function dsn(bool $readOnly = false): string
    {
        return DsnBuilder::build($this->config, $readOnly);
    }

    /**
     * The current connection to the primary (target_session_attrs=read-write), opened with
     * retries within the deadline if there is none (or, with $pingOnReuse, if it is dead).
     *
     * @throws FailoverTimeout when no primary could be reached within the deadline
     * @throws \PDOException   on a permanent connection error (authentication, TLS, ...)
     */
    public function connect(): \PDO
    {
        return $this->execute(null, false, false);
    }

    /**
     * The current read-only connection (target_session_attrs=prefer-standby: a standby if
     * one is reachable, else the primary), opened like connect().
     */
    public function connectReadOnly(): \PDO
    {
        return $this->execute(null, false, true);
    }

    /**
     * Runs $fn(PDO) on the primary and returns its result.
     *
     * On a failover error (see ErrorClassifier) the connection is dropped, then:
     *  - failures while connecting are retried (the statement was never sent);
     *  - failures inside $fn are retried only if $idempotent is true: otherwise the work may
     *    or may not have been applied, and the error is rethrown for the caller to decide.
     * Any other error is rethrown immediately (after rolling back a transaction left open).
     *
     * @template T
     * @param callable(\PDO): T $fn
     * @return T
     */
    public function run(callable $fn, bool $idempotent = false): mixed
    {
        return $this->execute($fn, $idempotent, false);
    }

    /**
     * Like run(), on the read-only connection (prefer-standby).
     *
     * @template T
     * @param callable(\PDO): T $fn
     * @return T
     */
    public function runReadOnly(callable $fn, bool $idempotent = false): mixed
    {
        return $this->execute($fn, $idempotent, true);
    }

    /** Drops the cached connections (the next call reconnects). */
    public function close(): void
    {
        $this->primary = null;
        $this->readOnly = null;
    }

    private function execute(?callable $fn, bool $idempotent, bool $readOnly): mixed
    {
        $start = ($this->clock)();
        $deadline = $start + $this->config->deadline;

        for ($attempt = 1; ; $attempt++) {
            $connecting = true;
            $pdo = null;
            try {
                $pdo = $this->acquire($readOnly);
                if ($fn === null) {
                    return $pdo;
                }
                $connecting = false;

                return $fn($pdo);
            } catch (\Throwable $e) {
                if ($connecting) {
                    // Nothing was sent yet, so any failover-class error is retryable, unless
                    // retrying cannot help (authentication, TLS, unknown database, ...).
                    // pdo_pgsql reports every failed connection as SQLSTATE 08006.
                    if (!ErrorClassifier::isFailover($e) || ErrorClassifier::isPermanentConnectFailure($e)) {
                        throw $e;
                    }
                } else {
                    if (!ErrorClassifier::isFailover($e)) {
                        $this->cleanUpAfterError($readOnly, $pdo);
                        throw $e;
                    }
                    $this->discard($readOnly, $pdo);
                    if (!$idempotent) {
                        throw $e; // the statement may have been applied: the caller decides
                    }
                }

                $now = ($this->clock)();
                $delay = $this->backoff->delay($attempt);
                if ($now + $delay >= $deadline) {
                    throw new FailoverTimeout($attempt, $now - $start, $this->config->deadline, $e);
                }
                if ($this->onRetry !== null) {
                    ($this->onRetry)($attempt, $delay, $e);
                }
                ($this->sleep)($delay);
            }
        }
    }

    /**
     * The cached connection (checked with "SELECT 1" when $pingOnReuse), or a new one.
     * Exceptions thrown here happen before any caller statement was sent.
     */
    private function acquire(bool $readOnly): \PDO
    {
        $pdo = $readOnly ? $this->readOnly : $this->primary;
        if ($pdo !== null) {
            if (!$this->pingOnReuse) {
                return $pdo;
            }
            try {
                $pdo->exec('SELECT 1');

                return $pdo;
            } catch (\Throwable) {
                $this->discard($readOnly, $pdo); // stale (e.g. killed by a failover): replace it
            }
        }

        $pdo = ($this->pdoFactory)(
            DsnBuilder::build($this->config, $readOnly),
            $this->config->user,
            $this->config->password(),
            $this->pdoOptions,
        );
        if ($readOnly) {
            $this->readOnly = $pdo;
        } else {
            $this->primary = $pdo;
        }

        return $pdo;
    }

    private function discard(bool $readOnly, ?\PDO $pdo): void
    {
        if ($readOnly) {
            if ($pdo === null || $this->readOnly === $pdo) {
                $this->readOnly = null;
            }
        } elseif ($pdo === null || $this->primary === $pdo) {
            $this->primary = null;
        }
    }

    /**
     * After a non-failover error inside $fn: do not keep a connection with an open (and, in
     * PostgreSQL, aborted) transaction in the cache. Roll it back, or drop the connection.
     */
    private function cleanUpAfterError(bool $readOnly, ?\PDO $pdo): void
    {
        if ($pdo === null) {
            return;
        }
        try {
            if ($pdo->inTransaction()) {
                $pdo->rollBack();
            }
        } catch (\Throwable) {
            $this->discard($readOnly, $pdo);
        }
    }
}
