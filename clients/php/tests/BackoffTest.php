<?php

declare(strict_types=1);

namespace Pgha\Failover\Tests;

use Pgha\Failover\Backoff;
use PHPUnit\Framework\TestCase;

final class BackoffTest extends TestCase
{
    public function testCeilingDoublesUpToTheCap(): void
    {
        $b = new Backoff(0.05, 1.0);

        $ceilings = array_map(static fn (int $n): float => $b->ceiling($n), range(1, 8));

        self::assertEqualsWithDelta([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0], $ceilings, 1e-12);
        self::assertSame(1.0, $b->ceiling(5000), 'no overflow for huge retry numbers');
    }

    public function testFullJitterBounds(): void
    {
        $zero = new Backoff(0.05, 1.0, static fn (): float => 0.0);
        $almostOne = new Backoff(0.05, 1.0, static fn (): float => 0.999999);
        $half = new Backoff(0.05, 1.0, static fn (): float => 0.5);

        for ($n = 1; $n <= 10; $n++) {
            self::assertSame(0.0, $zero->delay($n));
            self::assertEqualsWithDelta($almostOne->ceiling($n), $almostOne->delay($n), 1e-5);
            self::assertEqualsWithDelta($half->ceiling($n) / 2, $half->delay($n), 1e-12);
        }
    }

    public function testDefaultRandomStaysWithinBoundsAndVaries(): void
    {
        $b = new Backoff(0.05, 1.0);
        $seen = [];
        for ($i = 0; $i < 2000; $i++) {
            $n = 1 + $i % 8;
            $d = $b->delay($n);
            self::assertGreaterThanOrEqual(0.0, $d);
            self::assertLessThanOrEqual($b->ceiling($n), $d);
            $seen[(string) $d] = true;
        }
        self::assertGreaterThan(1000, count($seen), 'delays are jittered, not constant');
    }

    public function testOutOfRangeRandomIsClamped(): void
    {
        self::assertSame(0.4, (new Backoff(0.05, 1.0, static fn (): float => 7.0))->delay(4));
        self::assertSame(0.0, (new Backoff(0.05, 1.0, static fn (): float => -1.0))->delay(4));
    }

    /**
     * @return iterable<string, array{float, float}>
     */
    public static function invalid(): iterable
    {
        yield 'zero base' => [0.0, 1.0];
        yield 'negative base' => [-0.1, 1.0];
        yield 'cap below base' => [0.5, 0.1];
        yield 'infinite cap' => [0.1, INF];
    }

    /**
     * @dataProvider invalid
     */
    public function testInvalidParameters(float $base, float $cap): void
    {
        $this->expectException(\InvalidArgumentException::class);
        new Backoff($base, $cap);
    }
}
