<?php

declare(strict_types=1);

// Test bootstrap that needs no vendor/: a PSR-4 autoloader for the package (src/) and its
// tests (tests/). If `composer dump-autoload` was run, vendor/autoload.php is not needed
// either; this loader is authoritative so the tests always see the working tree.
spl_autoload_register(static function (string $class): void {
    $map = [
        'Pgha\\Failover\\Tests\\' => __DIR__ . '/',
        'Pgha\\Failover\\' => __DIR__ . '/../src/',
    ];
    foreach ($map as $prefix => $dir) {
        if (str_starts_with($class, $prefix)) {
            $file = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
            }

            return;
        }
    }
});
