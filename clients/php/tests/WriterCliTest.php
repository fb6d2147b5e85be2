<?php

declare(strict_types=1);

namespace Pgha\Failover\Tests;

use PHPUnit\Framework\TestCase;

/**
 * Runs bin/pgha-writer.php as a subprocess. No database: the "cluster" is closed local
 * ports, so every attempt ends in FailoverTimeout after the (short) deadline.
 */
final class WriterCliTest extends TestCase
{
    private const WRITER = __DIR__ . '/../bin/pgha-writer.php';

    /** @var list<string> */
    private array $tmpFiles = [];

    protected function tearDown(): void
    {
        foreach ($this->tmpFiles as $f) {
            @unlink($f);
        }
    }

    /**
     * @param list<string> $args
     * @return array{int, string, string} exit code, stdout, stderr
     */
    private static function runWriter(array $args): array
    {
        $cmd = array_merge([PHP_BINARY, self::WRITER], $args);
        $proc = proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
        self::assertIsResource($proc);
        $out = stream_get_contents($pipes[1]);
        $err = stream_get_contents($pipes[2]);
        fclose($pipes[1]);
        fclose($pipes[2]);

        return [proc_close($proc), (string) $out, (string) $err];
    }

    private function config(array $data): string
    {
        $path = tempnam(sys_get_temp_dir(), 'pgha-writer-');
        self::assertIsString($path);
        file_put_contents($path, json_encode($data));
        $this->tmpFiles[] = $path;

        return $path;
    }

    public function testHelp(): void
    {
        [$code, $out] = self::runWriter(['--help']);

        self::assertSame(0, $code);
        foreach (['--table', '--rows', '--seconds', '--interval-ms', '--idempotent'] as $opt) {
            self::assertStringContainsString($opt, $out);
        }
    }

    /**
     * @return iterable<string, array{list<string>, string}>
     */
    public static function usageErrors(): iterable
    {
        yield 'no config' => [['--table', 't'], 'config path is required'];
        yield 'no table' => [['/x.json'], '--table is required'];
        yield 'bad table' => [['/x.json', '--table', 't; DROP TABLE x'], '--table must be'];
        yield 'bad rows' => [['/x.json', '--table', 't', '--rows', '-1'], '--rows must be'];
        yield 'bad seconds' => [['/x.json', '--table', 't', '--seconds', 'soon'], '--seconds must be'];
        yield 'unknown option' => [['/x.json', '--table', 't', '--tabel', 'u'], 'unknown option --tabel'];
        yield 'missing value' => [['/x.json', '--table'], '--table needs a value'];
    }

    /**
     * @dataProvider usageErrors
     * @param list<string> $args
     */
    public function testUsageErrors(array $args, string $message): void
    {
        [$code, $out, $err] = self::runWriter($args);

        self::assertSame(2, $code, $err);
        self::assertSame('', $out);
        self::assertStringContainsString($message, $err);
    }

    public function testInvalidConfigListsProblems(): void
    {
        $path = $this->config(['hosts' => [], 'user' => 'u', 'sslmode' => 'nope']);

        [$code, $out, $err] = self::runWriter([$path, '--table', 't', '--rows', '1']);

        self::assertSame(1, $code);
        self::assertSame('', $out);
        foreach (['hosts:', 'dbname:', 'sslmode:'] as $key) {
            self::assertStringContainsString($key, $err);
        }
    }

    /**
     * @requires extension pdo_pgsql
     */
    public function testOneJsonLinePerAttempt(): void
    {
        $path = $this->config([
            'hosts' => [['host' => '127.0.0.1', 'port' => 1], ['host' => '127.0.0.1', 'port' => 2]],
            'dbname' => 'app',
            'user' => 'app',
            'sslmode' => 'disable',
            'deadline' => 0.3,
            'backoff_base' => 0.01,
            'backoff_cap' => 0.05,
        ]);

        $before = microtime(true);
        [$code, $out, $err] = self::runWriter(['--config', $path, '--table', 'public.drill', '--rows', '3', '--interval-ms', '0', '--start-seq', '10']);
        $after = microtime(true);

        self::assertSame(0, $code, $err);
        $lines = explode("\n", rtrim($out, "\n"));
        self::assertCount(3, $lines);
        foreach ($lines as $i => $json) {
            $line = json_decode($json, true, 8, JSON_THROW_ON_ERROR);
            self::assertSame(10 + $i, $line['seq']);
            self::assertFalse($line['ok']);
            self::assertSame('not_committed', $line['outcome']);
            self::assertIsFloat($line['t']);
            self::assertGreaterThanOrEqual($before, $line['t']);
            self::assertLessThanOrEqual($after, $line['t']);
            self::assertNull($line['server']);
            self::assertStringContainsString('FailoverTimeout', $line['error']);
            self::assertStringContainsString('Connection refused', $line['error']);
            self::assertSame('08006', $line['sqlstate']);
            self::assertGreaterThan(0, $line['retries']);
        }

        $events = array_map(
            static fn (string $l): array => json_decode($l, true, 8, JSON_THROW_ON_ERROR),
            explode("\n", rtrim($err, "\n")),
        );
        $summary = array_pop($events);
        self::assertSame('summary', $summary['event']);
        self::assertSame(3, $summary['attempts']);
        self::assertSame(3, $summary['not_committed']);
        self::assertSame(0, $summary['committed']);
        self::assertNotEmpty($events);
        foreach ($events as $event) {
            self::assertSame('retry', $event['event']);
        }
    }

    /**
     * @requires extension pdo_pgsql
     */
    public function testSecondsLimit(): void
    {
        $path = $this->config([
            'hosts' => [['host' => '127.0.0.1', 'port' => 1]],
            'dbname' => 'app',
            'user' => 'app',
            'sslmode' => 'disable',
            'deadline' => 0.05,
            'backoff_base' => 0.01,
            'backoff_cap' => 0.01,
        ]);

        $start = microtime(true);
        [$code, $out] = self::runWriter([$path, '--table', 'drill', '--seconds', '0.5', '--interval-ms', '50']);
        $elapsed = microtime(true) - $start;

        self::assertSame(0, $code);
        self::assertGreaterThanOrEqual(2, substr_count($out, "\n"), 'several attempts within --seconds');
        self::assertLessThan(5.0, $elapsed);
    }
}
