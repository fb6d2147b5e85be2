<?php

declare(strict_types=1);

namespace Pgha\Failover\Tests;

use Pgha\Failover\Config;
use Pgha\Failover\DsnBuilder;
use PHPUnit\Framework\TestCase;

final class DsnBuilderTest extends TestCase
{
    private static function config(array $extra = []): Config
    {
        return Config::fromArray($extra + [
            'hosts' => [
                ['host' => 'pg1.internal', 'port' => 5432],
                ['host' => '10.0.0.2', 'port' => 5433],
                ['host' => 'fd00::3', 'port' => 6432],
            ],
            'dbname' => 'app',
            'user' => 'app_rw',
            'password' => 'secret;pw',
        ]);
    }

    /**
     * @return array<string, string>
     */
    private static function parse(string $dsn): array
    {
        self::assertStringStartsWith('pgsql:', $dsn);
        $params = [];
        foreach (explode(';', substr($dsn, 6)) as $part) {
            [$k, $v] = explode('=', $part, 2);
            self::assertArrayNotHasKey($k, $params, "duplicate DSN key $k");
            $params[$k] = $v;
        }

        return $params;
    }

    public function testExactReadWriteDsn(): void
    {
        $ca = __DIR__ . '/bootstrap.php'; // any readable file
        $dsn = DsnBuilder::build(self::config(['sslrootcert' => $ca, 'application_name' => 'billing-api']));

        self::assertSame(
            'pgsql:host=pg1.internal,10.0.0.2,fd00::3;port=5432,5433,6432;dbname=app;'
            . 'target_session_attrs=read-write;connect_timeout=2;sslmode=verify-full;'
            . 'sslrootcert=' . $ca . ';application_name=billing-api',
            $dsn,
        );
    }

    public function testEveryHostAndPortIsPresentInOrder(): void
    {
        $p = self::parse(DsnBuilder::build(self::config()));

        self::assertSame('pg1.internal,10.0.0.2,fd00::3', $p['host']);
        self::assertSame('5432,5433,6432', $p['port']);
        self::assertSame(count(explode(',', $p['host'])), count(explode(',', $p['port'])));
    }

    public function testTargetSessionAttrs(): void
    {
        self::assertSame('read-write', self::parse(DsnBuilder::build(self::config()))['target_session_attrs']);
        self::assertSame('prefer-standby', self::parse(DsnBuilder::build(self::config(), true))['target_session_attrs']);
    }

    public function testConnectTimeoutInDsnAndPdoTimeoutAttribute(): void
    {
        $c = self::config(['connect_timeout' => 4]);

        self::assertSame('4', self::parse(DsnBuilder::build($c))['connect_timeout']);
        $opts = DsnBuilder::pdoOptions($c);
        // Without ATTR_TIMEOUT pdo_pgsql appends connect_timeout=30 after the DSN.
        self::assertSame(4, $opts[\PDO::ATTR_TIMEOUT]);
        self::assertSame(\PDO::ERRMODE_EXCEPTION, $opts[\PDO::ATTR_ERRMODE]);
    }

    public function testSslDefaultsAndOptionalKeysOmitted(): void
    {
        $p = self::parse(DsnBuilder::build(self::config()));

        self::assertSame('verify-full', $p['sslmode']);
        self::assertArrayNotHasKey('sslrootcert', $p);
        self::assertArrayNotHasKey('application_name', $p);
    }

    public function testCredentialsAreNotInTheDsn(): void
    {
        $dsn = DsnBuilder::build(self::config());

        self::assertStringNotContainsString('app_rw', $dsn);
        self::assertStringNotContainsString('secret', $dsn);
        self::assertArrayNotHasKey('user', self::parse($dsn));
        self::assertArrayNotHasKey('password', self::parse($dsn));
    }

    /**
     * @return iterable<string, array{string}>
     */
    public static function unsafeValues(): iterable
    {
        yield 'semicolon injection' => ['app;sslmode=disable'];
        yield 'lone semicolon' => [';'];
        yield 'newline' => ["app\nsslmode=disable"];
        yield 'NUL' => ["app\0"];
        yield 'tab' => ["a\tb"];
        yield 'DEL' => ["a\x7fb"];
    }

    /**
     * @dataProvider unsafeValues
     */
    public function testUnsafeValuesAreRejected(string $value): void
    {
        $this->expectException(\InvalidArgumentException::class);
        $this->expectExceptionMessage('dbname');
        DsnBuilder::value('dbname', $value);
    }

    /**
     * @return iterable<string, array{string, string}>
     */
    public static function quoting(): iterable
    {
        yield 'plain' => ['app_db-1.x', 'app_db-1.x'];
        yield 'path' => ['/etc/pgha/ca.pem', '/etc/pgha/ca.pem'];
        yield 'space' => ['my app', "'my app'"];
        yield 'equals' => ['a=b', "'a=b'"];
        yield 'single quote' => ["o'neil", "'o\\'neil'"];
        yield 'backslash' => ['a\\b', "'a\\\\b'"];
        yield 'empty' => ['', "''"];
    }

    /**
     * @dataProvider quoting
     */
    public function testValuesAreQuotedForLibpq(string $value, string $expected): void
    {
        self::assertSame($expected, DsnBuilder::value('application_name', $value));
    }

    public function testQuotedApplicationNameKeepsDsnWellFormed(): void
    {
        $dsn = DsnBuilder::build(self::config(['application_name' => "drill o'clock"]));

        self::assertStringEndsWith(";application_name='drill o\\'clock'", $dsn);
        self::assertSame(
            ['host', 'port', 'dbname', 'target_session_attrs', 'connect_timeout', 'sslmode', 'application_name'],
            array_keys(self::parse($dsn)),
        );
    }
}
