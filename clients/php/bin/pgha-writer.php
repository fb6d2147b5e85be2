#!/usr/bin/env php
<?php

/*
 * pgha-writer: a write-load generator for failover drills.
 *
 * Inserts rows (seq, client) into a table, one statement per attempt, through
 * Pgha\Failover\Connector, and prints ONE JSON line per attempt on stdout. Retries done
 * inside an attempt (reconnects) and a final summary go to stderr as JSON lines.
 * See clients/php/README.md ("Failover drill writer").
 */

declare(strict_types=1);

use Pgha\Failover\Config;
use Pgha\Failover\Connector;
use Pgha\Failover\ErrorClassifier;
use Pgha\Failover\FailoverTimeout;
use Pgha\Failover\InvalidConfig;

// Autoloading: the package's own vendor/, the project's vendor/ when installed as a
// dependency, or a minimal PSR-4 loader for src/ (works without composer at all).
foreach ([__DIR__ . '/../vendor/autoload.php', __DIR__ . '/../../../autoload.php'] as $autoload) {
    if (is_file($autoload)) {
        require_once $autoload;
        break;
    }
}
if (!class_exists(Connector::class)) {
    spl_autoload_register(static function (string $class): void {
        $prefix = 'Pgha\\Failover\\';
        if (str_starts_with($class, $prefix)) {
            $file = __DIR__ . '/../src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
            }
        }
    });
}

const USAGE = <<<'TXT'
Usage: pgha-writer.php [--config] CONFIG.json --table TABLE [options]

Inserts (seq, client) rows into TABLE, one INSERT per attempt, and prints one JSON line
per attempt on stdout:
  {"seq":1,"ok":true,"outcome":"committed","t":1700000000.123,"latency_ms":2.1,
   "retries":0,"server":"10.0.0.5/32","server_port":5432,"error":null,"sqlstate":null}
Reconnect retries inside an attempt and a final summary go to stderr (JSON lines).

Options:
  --config PATH       connection config (JSON, see README); may also be given positionally
  --table NAME        target table, [schema.]name (letters, digits, _), required
  --rows N            stop after N attempts (seq values)
  --seconds S         stop after S seconds (decimals allowed)
                      (with neither --rows nor --seconds: run until SIGINT/SIGTERM;
                       with both: stop at whichever comes first)
  --interval-ms MS    pause between two attempts, default 100
  --client NAME       value of the client column, default <hostname>:<pid>
  --start-seq N       first seq value, default 1
  --create-table      CREATE TABLE IF NOT EXISTS TABLE (seq bigint, client text,
                      created_at timestamptz, PRIMARY KEY (client, seq)) first
  --idempotent        INSERT ... ON CONFLICT (client, seq) DO NOTHING, run with
                      idempotent: true (also retried when the connection broke after
                      the statement was sent); needs the primary key above
  --help              this text

Exit status: 0 when the loop ran (whatever the outcomes), 1 on a configuration or
--create-table error, 2 on a usage error.
TXT;

/**
 * @param array<string, mixed> $data
 */
function emit($stream, array $data): void
{
    fwrite($stream, json_encode($data, JSON_UNESCAPED_SLASHES | JSON_PRESERVE_ZERO_FRACTION | JSON_INVALID_UTF8_SUBSTITUTE) . "\n");
    fflush($stream);
}

function usageError(string $message): never
{
    fwrite(STDERR, "pgha-writer: $message\n\n" . USAGE . "\n");
    exit(2);
}

/**
 * @param list<string> $argv
 * @return array<string, string|true>
 */
function parseArgs(array $argv): array
{
    $valued = ['config', 'table', 'rows', 'seconds', 'interval-ms', 'client', 'start-seq'];
    $flags = ['create-table', 'idempotent', 'help'];
    $opts = [];
    $positional = [];
    for ($i = 1, $n = count($argv); $i < $n; $i++) {
        $arg = $argv[$i];
        if (!str_starts_with($arg, '--')) {
            $positional[] = $arg;
            continue;
        }
        $name = substr($arg, 2);
        $value = null;
        if (str_contains($name, '=')) {
            [$name, $value] = explode('=', $name, 2);
        }
        if (in_array($name, $flags, true)) {
            if ($value !== null) {
                usageError("--$name takes no value");
            }
            $opts[$name] = true;
        } elseif (in_array($name, $valued, true)) {
            if ($value === null) {
                if ($i + 1 >= $n) {
                    usageError("--$name needs a value");
                }
                $value = $argv[++$i];
            }
            $opts[$name] = $value;
        } else {
            usageError("unknown option --$name");
        }
    }
    if (count($positional) > 1 || ($positional !== [] && isset($opts['config']))) {
        usageError('exactly one config path is expected');
    }
    if ($positional !== []) {
        $opts['config'] = $positional[0];
    }

    return $opts;
}

function intOption(array $opts, string $name, ?int $default, int $min): ?int
{
    if (!isset($opts[$name])) {
        return $default;
    }
    $v = $opts[$name];
    if (!is_string($v) || preg_match('/\A\d+\z/', $v) !== 1 || (int) $v < $min) {
        usageError("--$name must be an integer >= $min");
    }

    return (int) $v;
}

function quoteTable(string $table): string
{
    if (preg_match('/\A[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?\z/', $table) !== 1) {
        usageError('--table must be [schema.]name made of letters, digits and _ (got ' . json_encode($table) . ')');
    }

    return implode('.', array_map(static fn (string $p): string => '"' . $p . '"', explode('.', $table)));
}

function oneLine(string $s): string
{
    return trim((string) preg_replace('/\s+/', ' ', $s));
}

$opts = parseArgs($argv);
if (isset($opts['help'])) {
    fwrite(STDOUT, USAGE . "\n");
    exit(0);
}
if (!isset($opts['config']) || !is_string($opts['config'])) {
    usageError('a config path is required');
}
if (!isset($opts['table']) || !is_string($opts['table'])) {
    usageError('--table is required');
}
$table = quoteTable($opts['table']);
$rows = intOption($opts, 'rows', null, 1);
$intervalMs = intOption($opts, 'interval-ms', 100, 0);
$seq = intOption($opts, 'start-seq', 1, 0);
$seconds = null;
if (isset($opts['seconds'])) {
    if (!is_string($opts['seconds']) || !is_numeric($opts['seconds']) || (float) $opts['seconds'] <= 0) {
        usageError('--seconds must be a number > 0');
    }
    $seconds = (float) $opts['seconds'];
}
$client = isset($opts['client']) && is_string($opts['client']) ? $opts['client'] : gethostname() . ':' . getmypid();
$idempotent = isset($opts['idempotent']);

try {
    $config = Config::fromJsonFile($opts['config']);
} catch (InvalidConfig $e) {
    fwrite(STDERR, 'pgha-writer: ' . $e->getMessage() . "\n");
    exit(1);
}

$retries = 0;
$currentSeq = $seq;
$connector = new Connector(
    $config,
    onRetry: static function (int $attempt, float $delay, Throwable $e) use (&$retries, &$currentSeq): void {
        $retries++;
        emit(STDERR, [
            'event' => 'retry',
            'seq' => $currentSeq,
            'attempt' => $attempt,
            'delay' => round($delay, 4),
            't' => microtime(true),
            'sqlstate' => ErrorClassifier::sqlState($e),
            'error' => oneLine($e->getMessage()),
        ]);
    },
);

if (isset($opts['create-table'])) {
    try {
        $connector->run(static function (PDO $pdo) use ($table): void {
            $pdo->exec("CREATE TABLE IF NOT EXISTS $table (
                seq bigint NOT NULL,
                client text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                PRIMARY KEY (client, seq))");
        }, idempotent: true);
    } catch (Throwable $e) {
        fwrite(STDERR, 'pgha-writer: --create-table failed: ' . oneLine($e->getMessage()) . "\n");
        exit(1);
    }
}

$stop = false;
if (function_exists('pcntl_async_signals')) {
    pcntl_async_signals(true);
    $handler = static function () use (&$stop): void {
        $stop = true;
    };
    pcntl_signal(SIGINT, $handler);
    pcntl_signal(SIGTERM, $handler);
}

$sql = $idempotent
    // A replay after a lost acknowledgement finds the row and inserts nothing.
    ? "WITH ins AS (INSERT INTO $table (seq, client) VALUES (:seq, :client) ON CONFLICT (client, seq) DO NOTHING)
       SELECT inet_server_addr()::text AS server, inet_server_port() AS server_port"
    : "INSERT INTO $table (seq, client) VALUES (:seq, :client)
       RETURNING inet_server_addr()::text AS server, inet_server_port() AS server_port";
$counts = ['committed' => 0, 'not_committed' => 0, 'unknown' => 0];
$attempts = 0;
$start = hrtime(true) / 1e9;

while (!$stop) {
    if ($rows !== null && $attempts >= $rows) {
        break;
    }
    if ($seconds !== null && hrtime(true) / 1e9 - $start >= $seconds) {
        break;
    }
    $attempts++;
    $currentSeq = $seq;
    $retries = 0;
    $t = microtime(true);
    $t0 = hrtime(true);
    $ok = false;
    $server = $serverPort = $error = $sqlstate = null;
    try {
        $row = $connector->run(static function (PDO $pdo) use ($sql, $seq, $client): array {
            $st = $pdo->prepare($sql);
            $st->bindValue(':seq', $seq, PDO::PARAM_INT);
            $st->bindValue(':client', $client, PDO::PARAM_STR);
            $st->execute();
            $r = $st->fetch(PDO::FETCH_ASSOC);

            return is_array($r) ? $r : [];
        }, idempotent: $idempotent);
        $ok = true;
        $outcome = 'committed';
        $server = $row['server'] ?? null;
        $serverPort = isset($row['server_port']) ? (int) $row['server_port'] : null;
    } catch (Throwable $e) {
        if ($e instanceof FailoverTimeout) {
            // not idempotent: every attempt failed before the INSERT was sent;
            // idempotent: an earlier attempt may have sent (and committed) it
            $outcome = $idempotent ? 'unknown' : 'not_committed';
        } elseif (ErrorClassifier::isFailover($e) && !ErrorClassifier::isPermanentConnectFailure($e)) {
            // the connection broke after the INSERT was sent (run() does not retry it)
            $outcome = 'unknown';
        } else {
            // an SQL error: PostgreSQL rolled the statement back
            $outcome = 'not_committed';
        }
        $error = get_class($e) . ': ' . oneLine($e->getMessage());
        $sqlstate = ErrorClassifier::sqlState($e);
    }
    $line = [
        'seq' => $seq,
        'ok' => $ok,
        'outcome' => $outcome,
        't' => $t,
        'latency_ms' => round((hrtime(true) - $t0) / 1e6, 3),
        'retries' => $retries,
        'server' => $server,
        'server_port' => $serverPort,
        'sqlstate' => $sqlstate,
        'error' => $error,
    ];
    $counts[$line['outcome']]++;
    emit(STDOUT, $line);
    $seq++;

    if ($intervalMs > 0 && !$stop) {
        usleep($intervalMs * 1000);
    }
}

emit(STDERR, [
    'event' => 'summary',
    'attempts' => $attempts,
    'committed' => $counts['committed'],
    'not_committed' => $counts['not_committed'],
    'unknown' => $counts['unknown'],
    'elapsed' => round(hrtime(true) / 1e9 - $start, 3),
    'client' => $client,
]);
exit(0);
