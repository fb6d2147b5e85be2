<?php

declare(strict_types=1);

namespace Pgha\Failover\Tests;

use Pgha\Failover\Config;
use Pgha\Failover\InvalidConfig;
use PHPUnit\Framework\TestCase;

final class ConfigTest extends TestCase
{
    /** @var list<string> */
    private array $tmpFiles = [];
    /** @var list<string> */
    private array $envVars = [];

    protected function tearDown(): void
    {
        foreach ($this->tmpFiles as $f) {
            @unlink($f);
        }
        foreach ($this->envVars as $name) {
            putenv($name);
        }
    }

    /** @return array<string, mixed> */
    private static function minimal(): array
    {
        return [
            'hosts' => [['host' => 'pg1.example.net', 'port' => 5432], ['host' => '10.0.0.2', 'port' => 5433]],
            'dbname' => 'app',
            'user' => 'app_rw',
        ];
    }

    private function tmpFile(string $content, string $dir = ''): string
    {
        $path = tempnam($dir !== '' ? $dir : sys_get_temp_dir(), 'pgha-cfg-');
        self::assertIsString($path);
        file_put_contents($path, $content);
        $this->tmpFiles[] = $path;

        return $path;
    }

    private function setEnv(string $name, string $value): void
    {
        putenv("$name=$value");
        $this->envVars[] = $name;
    }

    /**
     * @param array<mixed> $data
     */
    private static function problems(array $data, ?string $baseDir = null): InvalidConfig
    {
        try {
            Config::fromArray($data, $baseDir);
        } catch (InvalidConfig $e) {
            return $e;
        }
        self::fail('expected InvalidConfig for ' . json_encode($data));
    }

    public function testDefaultsAreTheSharedFile(): void
    {
        $file = json_decode((string) file_get_contents(__DIR__ . '/../defaults.json'), true, 8, JSON_THROW_ON_ERROR);
        unset($file['$comment']);

        self::assertSame(realpath(__DIR__ . '/../defaults.json'), realpath(Config::DEFAULTS_FILE));
        self::assertEquals($file, Config::defaults());
        self::assertIsFloat(Config::defaults()['deadline']);
    }

    public function testDefaults(): void
    {
        $c = Config::fromArray(self::minimal());
        $d = Config::defaults();

        self::assertCount(2, $c->hosts);
        self::assertSame('pg1.example.net', $c->hosts[0]->host);
        self::assertSame($d['port'], $c->hosts[0]->port);
        self::assertSame('10.0.0.2', $c->hosts[1]->host);
        self::assertSame(5433, $c->hosts[1]->port);
        self::assertSame('app', $c->dbname);
        self::assertSame('app_rw', $c->user);
        self::assertNull($c->password());
        self::assertSame($d['sslmode'], $c->sslmode);
        self::assertNull($c->sslrootcert);
        self::assertSame($d['connect_timeout'], $c->connectTimeout);
        self::assertSame($d['deadline'], $c->deadline);
        self::assertSame($d['backoff_base'], $c->backoffBase);
        self::assertSame($d['backoff_cap'], $c->backoffCap);
        self::assertNull($c->applicationName);
    }

    public function testPortDefaultsTo5432AndIpv6IsAccepted(): void
    {
        $c = Config::fromArray(['hosts' => [['host' => 'fd00::5'], ['host' => 'db_1.internal']]] + self::minimal());

        self::assertSame(5432, $c->hosts[0]->port);
        self::assertSame('fd00::5', $c->hosts[0]->host);
        self::assertSame('[fd00::5]:5432', (string) $c->hosts[0]);
        self::assertSame('db_1.internal', $c->hosts[1]->host);
    }

    public function testAllOptionalKeys(): void
    {
        $ca = $this->tmpFile("-----BEGIN CERTIFICATE-----\n");
        $c = Config::fromArray(self::minimal() + [
            'password' => 's3cret',
            'sslmode' => 'verify-ca',
            'sslrootcert' => $ca,
            'connect_timeout' => 3,
            'deadline' => 20,
            'backoff_base' => 0.1,
            'backoff_cap' => 2,
            'application_name' => 'billing-api',
        ]);

        self::assertSame('s3cret', $c->password());
        self::assertSame('verify-ca', $c->sslmode);
        self::assertSame($ca, $c->sslrootcert);
        self::assertSame(3, $c->connectTimeout);
        self::assertSame(20.0, $c->deadline);
        self::assertSame(0.1, $c->backoffBase);
        self::assertSame(2.0, $c->backoffCap);
        self::assertSame('billing-api', $c->applicationName);
    }

    public function testEveryProblemIsReportedAtOnceWithItsKey(): void
    {
        $e = self::problems([
            'hosts' => [
                ['host' => 'pg1;sslmode=disable', 'port' => 5432],
                ['host' => 'pg2', 'port' => 0],
                'pg3:5432',
                ['host' => 'pg4', 'port' => '5432', 'weight' => 1],
            ],
            // dbname missing
            'user' => "app\nuser",
            'sslmode' => 'verify_full',
            'sslrootcert' => '/nonexistent/ca.pem',
            'connect_timeout' => '2',
            'deadline' => -1,
            'backoff_base' => 0,
            'application_name' => 'a;b',
            'conect_timeout' => 2,
        ]);

        $expected = [
            'conect_timeout',
            'hosts[0].host',
            'hosts[1].port',
            'hosts[2]',
            'hosts[3].weight',
            'hosts[3].port',
            'dbname',
            'user',
            'sslmode',
            'sslrootcert',
            'connect_timeout',
            'deadline',
            'backoff_base',
            'application_name',
        ];
        self::assertEqualsCanonicalizing($expected, $e->getKeys());
        self::assertCount(count($expected), $e->getProblems());
        foreach ($expected as $key) {
            self::assertStringContainsString("  - $key: ", $e->getMessage());
        }
        self::assertStringContainsString(count($expected) . ' problems', $e->getMessage());
    }

    public function testMissingEverything(): void
    {
        $e = self::problems([]);

        self::assertSame(['hosts', 'dbname', 'user'], $e->getKeys());
    }

    /**
     * @return iterable<string, array{mixed, string}>
     */
    public static function badHosts(): iterable
    {
        yield 'empty list' => [[], 'hosts'];
        yield 'not a list' => [['host' => 'pg1'], 'hosts'];
        yield 'string' => ['pg1,pg2', 'hosts'];
        yield 'comma in host' => [[['host' => 'pg1,pg2']], 'hosts[0].host'];
        yield 'space in host' => [[['host' => 'pg 1']], 'hosts[0].host'];
        yield 'quote in host' => [[['host' => "pg1'"]], 'hosts[0].host'];
        yield 'unix socket dir' => [[['host' => '/var/run/postgresql']], 'hosts[0].host'];
        yield 'empty host' => [[['host' => '']], 'hosts[0].host'];
        yield 'port too big' => [[['host' => 'pg1', 'port' => 70000]], 'hosts[0].port'];
        yield 'port float' => [[['host' => 'pg1', 'port' => 5432.5]], 'hosts[0].port'];
        yield 'duplicate' => [[['host' => 'pg1', 'port' => 5432], ['host' => 'PG1']], 'hosts[1]'];
    }

    /**
     * @dataProvider badHosts
     */
    public function testBadHosts(mixed $hosts, string $key): void
    {
        $e = self::problems(['hosts' => $hosts] + self::minimal());

        self::assertSame([$key], $e->getKeys());
    }

    public function testOnlyOnePasswordSource(): void
    {
        $e = self::problems(self::minimal() + ['password' => 'x', 'password_env' => 'PGHA_X', 'password_file' => '/x']);

        self::assertEqualsCanonicalizing(['password', 'password_env', 'password_file'], $e->getKeys());
    }

    public function testPasswordFromEnvironment(): void
    {
        $this->setEnv('PGHA_TEST_PW', 'from-env');

        $c = Config::fromArray(self::minimal() + ['password_env' => 'PGHA_TEST_PW']);

        self::assertSame('from-env', $c->password());
    }

    public function testPasswordEnvironmentVariableMustBeSet(): void
    {
        putenv('PGHA_TEST_PW_UNSET');

        $e = self::problems(self::minimal() + ['password_env' => 'PGHA_TEST_PW_UNSET']);

        self::assertSame(['password_env'], $e->getKeys());
        self::assertStringContainsString('PGHA_TEST_PW_UNSET is not set', $e->getMessage());
    }

    public function testPasswordFileIsResolvedAgainstTheConfigFileDirectoryAndTrimmed(): void
    {
        $dir = sys_get_temp_dir() . '/pgha-cfg-' . bin2hex(random_bytes(4));
        mkdir($dir);
        $pw = $dir . '/pw';
        file_put_contents($pw, "p@ss'w;rd\n");
        $cfg = $dir . '/pg.json';
        file_put_contents($cfg, json_encode(self::minimal() + ['password_file' => 'pw']));
        $this->tmpFiles[] = $pw;
        $this->tmpFiles[] = $cfg;
        try {
            $c = Config::fromJsonFile($cfg);

            self::assertSame("p@ss'w;rd", $c->password());
        } finally {
            @unlink($pw);
            @unlink($cfg);
            @rmdir($dir);
        }
    }

    public function testUnreadablePasswordFile(): void
    {
        $e = self::problems(self::minimal() + ['password_file' => 'missing-pw'], '/nonexistent-dir');

        self::assertSame(['password_file'], $e->getKeys());
        self::assertStringContainsString('/nonexistent-dir/missing-pw', $e->getMessage());
    }

    public function testPasswordIsNotDumped(): void
    {
        $c = Config::fromArray(self::minimal() + ['password' => 'hunter2-secret']);

        self::assertStringNotContainsString('hunter2-secret', print_r($c, true));
        ob_start();
        var_dump($c);
        $dump = (string) ob_get_clean();
        self::assertStringNotContainsString('hunter2-secret', $dump);
        self::assertStringContainsString('***', $dump);
    }

    public function testBackoffCapMustNotBeBelowBase(): void
    {
        $e = self::problems(self::minimal() + ['backoff_base' => 2, 'backoff_cap' => 1]);

        self::assertSame(['backoff_cap'], $e->getKeys());
    }

    public function testSemicolonInDbnameIsRejected(): void
    {
        $e = self::problems(['dbname' => 'app;sslmode=disable'] + self::minimal());

        self::assertSame(['dbname'], $e->getKeys());
    }

    public function testFromJsonFileReportsSyntaxErrors(): void
    {
        $path = $this->tmpFile('{"hosts": [');

        try {
            Config::fromJsonFile($path);
            self::fail('expected InvalidConfig');
        } catch (InvalidConfig $e) {
            self::assertSame(['(json)'], $e->getKeys());
            self::assertStringContainsString($path, $e->getMessage());
        }
    }

    public function testFromJsonFileRequiresAnObject(): void
    {
        $path = $this->tmpFile('[1, 2]');

        $this->expectException(InvalidConfig::class);
        $this->expectExceptionMessage('must be a JSON object');
        Config::fromJsonFile($path);
    }

    public function testFromJsonFileMissing(): void
    {
        $this->expectException(InvalidConfig::class);
        $this->expectExceptionMessage('cannot read /nonexistent/pg.json');
        Config::fromJsonFile('/nonexistent/pg.json');
    }

    public function testExampleConfigShapeIsValid(): void
    {
        // config.example.json documents the format; it must only use known keys.
        $data = json_decode((string) file_get_contents(__DIR__ . '/../config.example.json'), true);
        self::assertIsArray($data);
        $this->setEnv((string) $data['password_env'], 'x');
        $ca = $this->tmpFile('ca');
        $data['sslrootcert'] = $ca;

        $c = Config::fromArray($data);

        self::assertCount(3, $c->hosts);
    }
}
