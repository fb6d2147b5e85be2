<?php

declare(strict_types=1);

namespace Pgha\Failover\Tests;

use Pgha\Failover\Config;
use Pgha\Failover\DsnBuilder;
use PHPUnit\Framework\TestCase;

/**
 * Feeds our DSN to the real pdo_pgsql/libpq, without any database: the hosts are closed
 * local ports, so libpq parses the whole DSN, tries every host in order and fails with
 * "Connection refused" for each. A malformed DSN would fail differently.
 *
 * @requires extension pdo_pgsql
 */
final class PdoPgsqlDsnTest extends TestCase
{
    private static function closedPortConfig(array $extra = []): Config
    {
        return Config::fromArray($extra + [
            'hosts' => [['host' => '127.0.0.1', 'port' => 1], ['host' => '127.0.0.1', 'port' => 2]],
            'dbname' => 'app db',
            'user' => "o'neil",
            'password' => "p;w'd\\x",
            'sslmode' => 'disable',
            'application_name' => "drill o'clock \\ x",
        ]);
    }

    private static function connectError(Config $config, bool $readOnly): string
    {
        try {
            new \PDO(DsnBuilder::build($config, $readOnly), $config->user, $config->password(), DsnBuilder::pdoOptions($config));
        } catch (\PDOException $e) {
            return $e->getMessage();
        }
        self::fail('connected to a closed port?');
    }

    public function testLibpqAcceptsTheDsnAndTriesEveryHostInOrder(): void
    {
        foreach ([false, true] as $readOnly) {
            $message = self::connectError(self::closedPortConfig(), $readOnly);

            self::assertStringStartsWith('SQLSTATE[08006]', $message);
            $p1 = strpos($message, 'port 1 failed: Connection refused');
            $p2 = strpos($message, 'port 2 failed: Connection refused');
            self::assertNotFalse($p1, $message);
            self::assertNotFalse($p2, $message);
            self::assertLessThan($p2, $p1, 'hosts are tried in the configured order');
            foreach (['invalid', 'unterminated', 'missing "="'] as $parseError) {
                self::assertStringNotContainsString($parseError, $message);
            }
        }
    }

    public function testLibpqRejectsWhatWeWouldNeverBuild(): void
    {
        // Sanity check of the test above: a broken DSN fails with a parse error instead.
        try {
            new \PDO("pgsql:host=127.0.0.1;port=1;application_name='unterminated", null, null, [\PDO::ATTR_TIMEOUT => 1]);
            self::fail('expected PDOException');
        } catch (\PDOException $e) {
            self::assertStringContainsString('unterminated quoted string', $e->getMessage());
        }
    }
}
