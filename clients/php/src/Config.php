<?php

declare(strict_types=1);

namespace Pgha\Failover;

/**
 * Validated, immutable connection settings for a Patroni cluster.
 *
 * Build it with {@see Config::fromArray()} or {@see Config::fromJsonFile()}. Validation
 * collects every problem and throws one {@see InvalidConfig} that lists them all, each with
 * its key, so a broken file is fixed in one round trip.
 *
 * Keys (JSON / array):
 *   hosts             list of {"host": string, "port": int (default 5432)}, at least one
 *   dbname            string, required
 *   user              string, required
 *   password          string (plaintext; prefer one of the two below)
 *   password_file     path of a file whose content (trailing newline stripped) is the password
 *   password_env      name of an environment variable holding the password
 *                     (at most one of password / password_file / password_env; with none,
 *                     libpq falls back to PGPASSWORD / ~/.pgpass)
 *   sslmode           disable|allow|prefer|require|verify-ca|verify-full, default verify-full
 *   sslrootcert       path of the CA bundle (or libpq's special value "system")
 *   connect_timeout   integer seconds per host attempt (libpq connect_timeout), default 2
 *   deadline          seconds, total time budget of one connect()/run() call, default 15
 *   backoff_base      seconds, first retry's maximum delay, default 0.05
 *   backoff_cap       seconds, maximum delay between retries, default 1
 *   application_name  string shown in pg_stat_activity, optional
 *
 * The defaults quoted above are those of {@see Config::DEFAULTS_FILE} (../defaults.json),
 * the one declaration shared with the Python client; see {@see Config::defaults()}.
 *
 * Relative password_file / sslrootcert paths are resolved against the JSON file's
 * directory (or the $baseDir given to fromArray()).
 */
final class Config
{
    public const SSLMODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

    /**
     * The defaults of both failover clients, declared once: read by {@see Config::defaults()}
     * and by the Python client (clients/python/src/pgha_client/defaults.json is a symlink
     * to this file). It lives in this package so that a Composer install carries it.
     */
    public const DEFAULTS_FILE = __DIR__ . '/../defaults.json';

    /** Keys of DEFAULTS_FILE and the type of each value ('number': int or float, read as float). */
    private const DEFAULT_TYPES = [
        'port' => 'int',
        'sslmode' => 'string',
        'connect_timeout' => 'int',
        'deadline' => 'number',
        'backoff_base' => 'number',
        'backoff_cap' => 'number',
        'target_session_attrs' => 'string',
        'read_only_target_session_attrs' => 'string',
    ];

    /** @var array<string, int|float|string>|null */
    private static ?array $defaults = null;

    private const KEYS = [
        'hosts', 'dbname', 'user', 'password', 'password_file', 'password_env', 'sslmode',
        'sslrootcert', 'connect_timeout', 'deadline', 'backoff_base', 'backoff_cap',
        'application_name',
    ];

    /** PostgreSQL truncates identifiers and application_name to NAMEDATALEN - 1 bytes. */
    private const MAX_NAME_BYTES = 63;

    /**
     * @param list<Host> $hosts
     */
    private function __construct(
        public readonly array $hosts,
        public readonly string $dbname,
        public readonly string $user,
        #[\SensitiveParameter] private readonly ?string $password,
        public readonly string $sslmode,
        public readonly ?string $sslrootcert,
        public readonly int $connectTimeout,
        public readonly float $deadline,
        public readonly float $backoffBase,
        public readonly float $backoffCap,
        public readonly ?string $applicationName,
    ) {
    }

    /**
     * The clients' defaults from {@see Config::DEFAULTS_FILE}, checked once (every key, no
     * other; "$comment" is ignored). Numbers of seconds are floats.
     *
     * @return array{port: int, sslmode: string, connect_timeout: int, deadline: float, backoff_base: float, backoff_cap: float, target_session_attrs: string, read_only_target_session_attrs: string}
     *
     * @throws \LogicException if the file is missing or malformed (a broken package)
     */
    public static function defaults(): array
    {
        if (self::$defaults === null) {
            $path = self::DEFAULTS_FILE;
            $json = is_file($path) ? file_get_contents($path) : false;
            if ($json === false) {
                throw new \LogicException('cannot read the client defaults ' . $path);
            }
            $data = json_decode($json, true, 8, JSON_THROW_ON_ERROR);
            if (!is_array($data)) {
                throw new \LogicException($path . ': must be a JSON object');
            }
            unset($data['$comment']);
            $problems = [];
            foreach (self::DEFAULT_TYPES as $key => $type) {
                $v = $data[$key] ?? null;
                $ok = match ($type) {
                    'int' => is_int($v),
                    'string' => is_string($v),
                    'number' => is_int($v) || is_float($v),
                };
                if (!$ok) {
                    $problems[] = "$key: must be $type, got " . self::show($v);
                } elseif ($type === 'number') {
                    $data[$key] = (float) $v;
                }
            }
            foreach (array_keys(array_diff_key($data, self::DEFAULT_TYPES)) as $key) {
                $problems[] = "$key: unknown key";
            }
            if ($problems !== []) {
                throw new \LogicException($path . ': ' . implode('; ', $problems));
            }
            self::$defaults = $data;
        }

        /** @var array{port: int, sslmode: string, connect_timeout: int, deadline: float, backoff_base: float, backoff_cap: float, target_session_attrs: string, read_only_target_session_attrs: string} */
        return self::$defaults;
    }

    /**
     * The password, or null to let libpq use PGPASSWORD / PGPASSFILE / ~/.pgpass.
     * Deliberately not a public property, so it does not show up in dumps.
     */
    public function password(): ?string
    {
        return $this->password;
    }

    /**
     * @return array<string, mixed>
     */
    public function __debugInfo(): array
    {
        return [
            'hosts' => array_map('strval', $this->hosts),
            'dbname' => $this->dbname,
            'user' => $this->user,
            'password' => $this->password === null ? null : '***',
            'sslmode' => $this->sslmode,
            'sslrootcert' => $this->sslrootcert,
            'connectTimeout' => $this->connectTimeout,
            'deadline' => $this->deadline,
            'backoffBase' => $this->backoffBase,
            'backoffCap' => $this->backoffCap,
            'applicationName' => $this->applicationName,
        ];
    }

    /**
     * @throws InvalidConfig listing every problem found
     */
    public static function fromJsonFile(string $path): self
    {
        if (!is_file($path) || !is_readable($path)) {
            throw new InvalidConfig([['key' => '(file)', 'message' => 'cannot read ' . $path]], $path);
        }
        $json = file_get_contents($path);
        if ($json === false) {
            throw new InvalidConfig([['key' => '(file)', 'message' => 'cannot read ' . $path]], $path);
        }
        try {
            $data = json_decode($json, true, 32, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new InvalidConfig([['key' => '(json)', 'message' => 'not valid JSON: ' . $e->getMessage()]], $path);
        }
        if (!is_array($data) || ($data !== [] && array_is_list($data))) {
            throw new InvalidConfig([['key' => '(root)', 'message' => 'must be a JSON object']], $path);
        }
        $real = realpath($path);

        return self::fromArray($data, dirname($real !== false ? $real : $path), $path);
    }

    /**
     * @param array<mixed>  $data    decoded configuration (see the class comment for keys)
     * @param string|null   $baseDir directory against which relative paths are resolved
     *                               (default: the current working directory)
     * @param string|null   $source  file name used in error messages
     *
     * @throws InvalidConfig listing every problem found
     */
    public static function fromArray(#[\SensitiveParameter] array $data, ?string $baseDir = null, ?string $source = null): self
    {
        $defaults = self::defaults();
        $problems = [];
        $add = static function (string $key, string $message) use (&$problems): void {
            $problems[] = ['key' => $key, 'message' => $message];
        };

        foreach (array_keys($data) as $key) {
            if (!in_array($key, self::KEYS, true)) {
                $add((string) $key, 'unknown key (allowed: ' . implode(', ', self::KEYS) . ')');
            }
        }

        // hosts
        $hosts = [];
        if (!array_key_exists('hosts', $data)) {
            $add('hosts', 'is required (a list of {"host": ..., "port": ...})');
        } elseif (!is_array($data['hosts']) || !array_is_list($data['hosts']) || $data['hosts'] === []) {
            $add('hosts', 'must be a non-empty list of {"host": ..., "port": ...}');
        } else {
            $seen = [];
            foreach ($data['hosts'] as $i => $entry) {
                $prefix = "hosts[$i]";
                if (!is_array($entry) || ($entry !== [] && array_is_list($entry))) {
                    $add($prefix, 'must be an object {"host": ..., "port": ...}');
                    continue;
                }
                foreach (array_keys($entry) as $k) {
                    if ($k !== 'host' && $k !== 'port') {
                        $add("$prefix.$k", 'unknown key (allowed: host, port)');
                    }
                }
                $host = $entry['host'] ?? null;
                $hostOk = false;
                if (!is_string($host) || $host === '') {
                    $add("$prefix.host", 'is required and must be a non-empty string');
                } elseif (!self::isValidHost($host)) {
                    $add("$prefix.host", sprintf(
                        'must be a DNS name or an IP address (letters, digits, ".", "-", "_" or an IPv6 literal), got %s',
                        self::show($host),
                    ));
                } else {
                    $hostOk = true;
                }
                $port = $entry['port'] ?? $defaults['port'];
                $portOk = false;
                if (!is_int($port) || $port < 1 || $port > 65535) {
                    $add("$prefix.port", 'must be an integer between 1 and 65535, got ' . self::show($port));
                } else {
                    $portOk = true;
                }
                if ($hostOk && $portOk) {
                    $id = strtolower($host) . '|' . $port;
                    if (isset($seen[$id])) {
                        $add($prefix, sprintf('duplicate of hosts[%d] (%s)', $seen[$id], $host . ':' . $port));
                    } else {
                        $seen[$id] = $i;
                        $hosts[] = new Host($host, $port);
                    }
                }
            }
        }

        // dbname, user
        $dbname = self::requiredName($data, 'dbname', $add);
        $user = self::requiredName($data, 'user', $add);

        // password sources: at most one
        $password = null;
        $sources = array_values(array_filter(
            ['password', 'password_file', 'password_env'],
            static fn (string $k): bool => array_key_exists($k, $data),
        ));
        if (count($sources) > 1) {
            foreach ($sources as $k) {
                $add($k, 'only one of password, password_file, password_env may be set (found: ' . implode(', ', $sources) . ')');
            }
        } elseif ($sources === ['password']) {
            $password = self::checkPassword($data['password'], 'password', $add);
        } elseif ($sources === ['password_file']) {
            $file = $data['password_file'];
            if (!is_string($file) || $file === '') {
                $add('password_file', 'must be a non-empty path string');
            } else {
                $path = self::resolvePath($file, $baseDir);
                $content = is_file($path) && is_readable($path) ? @file_get_contents($path) : false;
                if ($content === false) {
                    $add('password_file', 'cannot read ' . $path);
                } else {
                    $password = self::checkPassword(rtrim($content, "\r\n"), 'password_file', $add, 'file ' . $path);
                }
            }
        } elseif ($sources === ['password_env']) {
            $name = $data['password_env'];
            if (!is_string($name) || preg_match('/\A[A-Za-z_][A-Za-z0-9_]*\z/', $name) !== 1) {
                $add('password_env', 'must be an environment variable name, got ' . self::show($name));
            } else {
                $value = getenv($name);
                if ($value === false) {
                    $add('password_env', "environment variable $name is not set");
                } else {
                    $password = self::checkPassword($value, 'password_env', $add, "environment variable $name");
                }
            }
        }

        // sslmode, sslrootcert
        $sslmode = $data['sslmode'] ?? $defaults['sslmode'];
        if (!is_string($sslmode) || !in_array($sslmode, self::SSLMODES, true)) {
            $add('sslmode', 'must be one of ' . implode(', ', self::SSLMODES) . ', got ' . self::show($sslmode));
            $sslmode = $defaults['sslmode'];
        }
        $sslrootcert = null;
        if (array_key_exists('sslrootcert', $data)) {
            $cert = $data['sslrootcert'];
            if (!is_string($cert) || $cert === '') {
                $add('sslrootcert', 'must be a non-empty path string');
            } elseif (self::hasUnsafeChars($cert)) {
                $add('sslrootcert', "must not contain ';' or control characters");
            } elseif ($cert === 'system') {
                $sslrootcert = $cert; // libpq >= 16: use the system trust store
            } else {
                $path = self::resolvePath($cert, $baseDir);
                if (!is_file($path) || !is_readable($path)) {
                    $add('sslrootcert', 'cannot read ' . $path);
                } elseif (self::hasUnsafeChars($path)) {
                    $add('sslrootcert', "resolved path must not contain ';' or control characters: " . self::show($path));
                } else {
                    $sslrootcert = $path;
                }
            }
        }

        // timings
        $connectTimeout = $data['connect_timeout'] ?? $defaults['connect_timeout'];
        if (!is_int($connectTimeout) || $connectTimeout < 1 || $connectTimeout > 3600) {
            $add('connect_timeout', 'must be an integer number of seconds between 1 and 3600, got ' . self::show($connectTimeout));
            $connectTimeout = $defaults['connect_timeout'];
        }
        $deadline = self::positiveSeconds($data, 'deadline', $defaults['deadline'], $add);
        $base = self::positiveSeconds($data, 'backoff_base', $defaults['backoff_base'], $add);
        $cap = self::positiveSeconds($data, 'backoff_cap', $defaults['backoff_cap'], $add);
        if ($base !== null && $cap !== null && $cap < $base) {
            $add('backoff_cap', sprintf('must be >= backoff_base (%s), got %s', self::show($base), self::show($cap)));
        }

        // application_name
        $applicationName = null;
        if (array_key_exists('application_name', $data)) {
            $name = $data['application_name'];
            if (!is_string($name) || $name === '') {
                $add('application_name', 'must be a non-empty string');
            } elseif (preg_match('/\A[\x20-\x7E]+\z/', $name) !== 1 || str_contains($name, ';')) {
                $add('application_name', "must be printable ASCII without ';', got " . self::show($name));
            } elseif (strlen($name) > self::MAX_NAME_BYTES) {
                $add('application_name', 'must be at most ' . self::MAX_NAME_BYTES . ' bytes long');
            } else {
                $applicationName = $name;
            }
        }

        if ($problems !== []) {
            throw new InvalidConfig($problems, $source);
        }

        return new self(
            $hosts,
            (string) $dbname,
            (string) $user,
            $password,
            $sslmode,
            $sslrootcert,
            $connectTimeout,
            (float) $deadline,
            (float) $base,
            (float) $cap,
            $applicationName,
        );
    }

    /** True when the value contains the PDO DSN separator ';' or a control character. */
    public static function hasUnsafeChars(string $value): bool
    {
        return preg_match('/[;\x00-\x1F\x7F]/', $value) === 1;
    }

    public static function isValidHost(string $host): bool
    {
        if (filter_var($host, FILTER_VALIDATE_IP) !== false) {
            return true;
        }
        if (strlen($host) > 253) {
            return false;
        }
        $label = '[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?';

        return preg_match('/\A' . $label . '(?:\.' . $label . ')*\.?\z/', $host) === 1;
    }

    /**
     * @param array<mixed> $data
     */
    private static function requiredName(array $data, string $key, callable $add): ?string
    {
        if (!array_key_exists($key, $data)) {
            $add($key, 'is required');

            return null;
        }
        $value = $data[$key];
        if (!is_string($value) || $value === '') {
            $add($key, 'must be a non-empty string');

            return null;
        }
        if (self::hasUnsafeChars($value)) {
            $add($key, "must not contain ';' or control characters, got " . self::show($value));

            return null;
        }
        if (strlen($value) > self::MAX_NAME_BYTES) {
            $add($key, 'must be at most ' . self::MAX_NAME_BYTES . ' bytes long');

            return null;
        }

        return $value;
    }

    private static function checkPassword(mixed $value, string $key, callable $add, string $origin = 'value'): ?string
    {
        if (!is_string($value) || $value === '') {
            $add($key, "$origin must be a non-empty string");

            return null;
        }
        if (str_contains($value, "\0")) {
            $add($key, "$origin must not contain NUL bytes");

            return null;
        }

        return $value;
    }

    /**
     * @param array<mixed> $data
     */
    private static function positiveSeconds(array $data, string $key, float $default, callable $add): ?float
    {
        if (!array_key_exists($key, $data)) {
            return $default;
        }
        $v = $data[$key];
        if ((!is_int($v) && !is_float($v)) || !is_finite((float) $v) || $v <= 0 || $v > 86400) {
            $add($key, 'must be a number of seconds > 0 and <= 86400, got ' . self::show($v));

            return null;
        }

        return (float) $v;
    }

    private static function resolvePath(string $path, ?string $baseDir): string
    {
        if ($path[0] === '/' || $baseDir === null) {
            return $path;
        }

        return rtrim($baseDir, '/') . '/' . $path;
    }

    private static function show(mixed $v): string
    {
        $json = json_encode($v, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION | JSON_INVALID_UTF8_SUBSTITUTE);

        return $json === false ? get_debug_type($v) : $json;
    }
}
