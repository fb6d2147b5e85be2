<?php

declare(strict_types=1);

namespace Pgha\Failover;

/**
 * Builds the PDO pgsql DSN in libpq multi-host form:
 *
 *   pgsql:host=h1,h2,h3;port=p1,p2,p3;dbname=app;target_session_attrs=read-write;
 *         connect_timeout=2;sslmode=verify-full;sslrootcert=/etc/ca.pem;application_name=x
 *
 * libpq tries the hosts in order and keeps the first one whose session matches
 * target_session_attrs (read-write = the primary; prefer-standby = a standby if one is up,
 * else the primary). The user and the password are NOT part of the DSN: they are given to
 * the PDO constructor, which quotes them itself, so they never show up in a logged DSN.
 *
 * pdo_pgsql turns every ';' of the DSN into a space before handing it to libpq, even
 * inside quotes, so a ';' in a value could inject another parameter (e.g.
 * "app;sslmode=disable"). Values containing ';' or control characters are rejected;
 * other values that are not plain tokens are single-quoted with libpq's escaping rules.
 */
final class DsnBuilder
{
    /** Characters that never need quoting in a libpq conninfo value. */
    private const PLAIN = '/\A[A-Za-z0-9._\/:,@+~-]+\z/';

    public static function build(Config $config, bool $readOnly = false): string
    {
        if ($config->hosts === []) {
            throw new \InvalidArgumentException('at least one host is required');
        }
        $hosts = [];
        $ports = [];
        foreach ($config->hosts as $i => $h) {
            if (!Config::isValidHost($h->host)) {
                throw new \InvalidArgumentException(sprintf('hosts[%d].host is not a valid host name or IP: %s', $i, json_encode($h->host)));
            }
            if ($h->port < 1 || $h->port > 65535) {
                throw new \InvalidArgumentException(sprintf('hosts[%d].port is out of range: %d', $i, $h->port));
            }
            $hosts[] = $h->host;
            $ports[] = (string) $h->port;
        }

        $params = [
            'host' => implode(',', $hosts),
            'port' => implode(',', $ports),
            'dbname' => $config->dbname,
            'target_session_attrs' => Config::defaults()[$readOnly ? 'read_only_target_session_attrs' : 'target_session_attrs'],
            'connect_timeout' => (string) $config->connectTimeout,
            'sslmode' => $config->sslmode,
        ];
        if ($config->sslrootcert !== null) {
            $params['sslrootcert'] = $config->sslrootcert;
        }
        if ($config->applicationName !== null) {
            $params['application_name'] = $config->applicationName;
        }

        $parts = [];
        foreach ($params as $key => $value) {
            $parts[] = $key . '=' . self::value($key, $value);
        }

        return 'pgsql:' . implode(';', $parts);
    }

    /**
     * PDO attributes every connection needs.
     *
     * PDO::ATTR_TIMEOUT matters: pdo_pgsql appends "connect_timeout=<ATTR_TIMEOUT>" (default
     * 30) AFTER the DSN, and libpq keeps the last occurrence, so without it the DSN's
     * connect_timeout would be silently replaced by 30 seconds per host.
     *
     * @return array<int, mixed>
     */
    public static function pdoOptions(Config $config): array
    {
        return [
            \PDO::ATTR_ERRMODE => \PDO::ERRMODE_EXCEPTION,
            \PDO::ATTR_TIMEOUT => $config->connectTimeout,
        ];
    }

    /**
     * Encodes one conninfo value: plain tokens as-is, anything else single-quoted with "'"
     * and "\" backslash-escaped.
     *
     * @throws \InvalidArgumentException if the value contains ';' (which pdo_pgsql would turn
     *                                   into a parameter separator) or a control character
     */
    public static function value(string $key, string $value): string
    {
        if (Config::hasUnsafeChars($value)) {
            throw new \InvalidArgumentException(sprintf(
                "DSN value for %s must not contain ';' or control characters: %s",
                $key,
                json_encode($value, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE),
            ));
        }
        if (preg_match(self::PLAIN, $value) === 1) {
            return $value;
        }

        return "'" . addcslashes($value, "'\\") . "'";
    }
}
