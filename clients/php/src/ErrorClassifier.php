<?php

declare(strict_types=1);

namespace Pgha\Failover;

/**
 * Decides whether an error means "the server we talked to is gone or is no longer the
 * primary" (worth reconnecting and retrying) or is an ordinary error to rethrow.
 *
 * Failover errors:
 *  - SQLSTATE class 08 (connection exception: 08000, 08001, 08003, 08004, 08006, 08P01, ...);
 *    pdo_pgsql reports every failed connection attempt as 08006;
 *  - 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now;
 *  - 25006 read_only_sql_transaction (we reached a standby / a demoted primary);
 *  - SQLSTATE HY000 (or none) whose message says the connection was lost: pdo_pgsql has no
 *    SQLSTATE for errors raised by libpq itself, e.g. "server closed the connection
 *    unexpectedly", "no connection to the server", "SSL SYSCALL error: EOF detected". A
 *    server FATAL 57P01 usually arrives this way too ("FATAL: terminating connection due
 *    to administrator command" + "server closed the connection unexpectedly").
 *
 * Deliberately NOT failover errors: 40001 serialization_failure and 40P01 deadlock (retry
 * those in your own transaction logic), 57014 query_canceled, constraint violations, ...
 * Message patterns are only consulted for HY000/unknown SQLSTATEs, so a unique violation
 * whose key happens to contain "server closed the connection" is not misclassified.
 *
 * Connection-time errors that retrying cannot fix (bad password, missing database,
 * pg_hba rejection, TLS verification failure, malformed DSN) are "permanent": pdo_pgsql
 * reports them as 08006 too, so they are recognised by message. With several hosts libpq
 * concatenates one "connection to server at ... failed: ..." section per host; the error
 * is permanent only if EVERY section is, so one misconfigured node does not stop us from
 * waiting for the new primary. DNS failures are not permanent (they are often transient).
 */
final class ErrorClassifier
{
    /** @var list<string> */
    public const FAILOVER_SQLSTATES = ['57P01', '57P02', '57P03', '25006'];

    /** Lower-case fragments of libpq / server messages meaning the connection is unusable. */
    public const CONNECTION_LOST_PATTERNS = [
        'server closed the connection unexpectedly',
        'no connection to the server',
        'connection to server was lost',
        'could not receive data from server',
        'could not send data to server',
        'ssl syscall error',
        'ssl connection has been closed unexpectedly',
        'ssl error: unexpected eof',
        'eof detected',
        'connection not open',
        'connection reset by peer',
        'broken pipe',
        'connection refused',
        'connection timed out',
        'timeout expired',
        'terminating connection due to administrator command',
        'terminating connection because of crash of another server process',
        'terminating connection due to unexpected postmaster exit',
        'the database system is shutting down',
        'the database system is starting up',
        'the database system is in recovery mode',
        'the database system is not yet accepting connections',
        'the database system is not accepting connections',
    ];

    /** Lower-case fragments of connection errors that retrying will not fix. */
    public const PERMANENT_CONNECT_PATTERNS = [
        'password authentication failed',
        'no pg_hba.conf entry',
        'pg_hba.conf rejects connection',
        'fe_sendauth: no password supplied',
        'does not have connect privilege',
        'does not exist',                 // database, role, root certificate file
        'root certificate file',
        'certificate verify failed',
        'does not match host name',
        'server does not support ssl',
        'ssl is not enabled on the server',
        'invalid connection option',
        'invalid sslmode value',
        'invalid target_session_attrs value',
        'invalid integer value',
        'invalid port number',
        'missing "=" after',
        'unterminated quoted string',
    ];

    private const MAX_CHAIN = 10;

    /**
     * The SQLSTATE of the first PDOException in the exception chain, or null.
     */
    public static function sqlState(\Throwable $e): ?string
    {
        $pdo = self::findPdoException($e);
        if ($pdo === null) {
            return null;
        }
        $info = $pdo->errorInfo;
        if (is_array($info) && isset($info[0]) && is_string($info[0]) && strlen($info[0]) === 5) {
            return strtoupper($info[0]);
        }
        if (preg_match('/SQLSTATE\[([0-9A-Za-z]{5})\]/', $pdo->getMessage(), $m) === 1) {
            return strtoupper($m[1]);
        }
        $code = $pdo->getCode();
        if (is_string($code) && preg_match('/\A[0-9A-Z]{5}\z/', $code) === 1) {
            return $code;
        }

        return null;
    }

    /**
     * True if the error means the connection is lost or the server is not (any more) a
     * writable primary, so reconnecting can help.
     */
    public static function isFailover(\Throwable $e): bool
    {
        $pdo = self::findPdoException($e);
        if ($pdo === null) {
            return false;
        }
        $state = self::sqlState($pdo);
        if ($state !== null) {
            if (str_starts_with($state, '08') || in_array($state, self::FAILOVER_SQLSTATES, true)) {
                return true;
            }
            if ($state !== 'HY000') {
                return false;
            }
        }

        return self::messageMatches($pdo, self::CONNECTION_LOST_PATTERNS);
    }

    /**
     * True if a failure to connect will not go away by retrying (authentication,
     * authorisation, unknown database, TLS verification, malformed parameters).
     */
    public static function isPermanentConnectFailure(\Throwable $e): bool
    {
        $pdo = self::findPdoException($e);
        if ($pdo === null) {
            return false;
        }
        $info = $pdo->errorInfo;
        $text = is_array($info) && isset($info[2]) && is_string($info[2]) && $info[2] !== ''
            ? $info[2]
            : (string) preg_replace('/\ASQLSTATE\[[0-9A-Za-z]{5}\](?:\s*\[\d+\])?\s*/', '', $pdo->getMessage());
        // One section per host tried (libpq >= 14 wording).
        $sections = preg_split('/(?=connection to server (?:at|on) )/i', $text, -1, PREG_SPLIT_NO_EMPTY);
        $sections = array_values(array_filter(
            array_map('trim', $sections === false ? [$text] : $sections),
            static fn (string $s): bool => $s !== '',
        ));
        if ($sections === []) {
            return false;
        }
        foreach ($sections as $section) {
            if (!self::textMatches($section, self::PERMANENT_CONNECT_PATTERNS)) {
                return false;
            }
        }

        return true;
    }

    /**
     * The first \PDOException in $e's chain ($e itself, then getPrevious()), so errors
     * wrapped by a framework are classified too.
     */
    public static function findPdoException(\Throwable $e): ?\PDOException
    {
        for ($i = 0, $cur = $e; $cur !== null && $i < self::MAX_CHAIN; $i++, $cur = $cur->getPrevious()) {
            if ($cur instanceof \PDOException) {
                return $cur;
            }
        }

        return null;
    }

    /**
     * @param list<string> $patterns
     */
    private static function messageMatches(\PDOException $e, array $patterns): bool
    {
        $text = strtolower($e->getMessage());
        $info = $e->errorInfo;
        if (is_array($info) && isset($info[2]) && is_string($info[2])) {
            $text .= "\n" . strtolower($info[2]);
        }
        return self::textMatches($text, $patterns);
    }

    /**
     * @param list<string> $patterns lower-case fragments
     */
    private static function textMatches(string $text, array $patterns): bool
    {
        $text = strtolower($text);
        foreach ($patterns as $p) {
            if (str_contains($text, $p)) {
                return true;
            }
        }

        return false;
    }
}
