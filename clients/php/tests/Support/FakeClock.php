<?php

declare(strict_types=1);

namespace Pgha\Failover\Tests\Support;

/** A manual clock; sleep() advances it and records every requested delay. */
final class FakeClock
{
    /** @var list<float> */
    public array $sleeps = [];

    public function __construct(public float $now = 1000.0)
    {
    }

    public function now(): float
    {
        return $this->now;
    }

    public function sleep(float $seconds): void
    {
        \PHPUnit\Framework\Assert::assertGreaterThanOrEqual(0.0, $seconds, 'negative sleep');
        $this->sleeps[] = $seconds;
        $this->now += $seconds;
    }

    public function advance(float $seconds): void
    {
        $this->now += $seconds;
    }
}
