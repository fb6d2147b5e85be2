<?php

declare(strict_types=1);

namespace Pgha\Failover;

/**
 * Capped exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff
 * and Jitter"): the delay before retry n (n = 1, 2, ...) is uniformly random in
 * [0, min(cap, base * 2^(n-1))]. Full jitter spreads the reconnect storm of many clients
 * after a failover instead of having them all hit the new primary at the same instants.
 */
final class Backoff
{
    /** @var \Closure(): float */
    private \Closure $random;

    /**
     * @param float         $base   seconds, upper bound of the first delay (> 0)
     * @param float         $cap    seconds, upper bound of any delay (>= base)
     * @param callable|null $random returns a float in [0, 1); injectable for tests
     */
    public function __construct(
        public readonly float $base,
        public readonly float $cap,
        ?callable $random = null,
    ) {
        if (!($base > 0) || !($cap >= $base) || !is_finite($cap)) {
            throw new \InvalidArgumentException(sprintf('backoff needs 0 < base <= cap, got base=%s cap=%s', $base, $cap));
        }
        $this->random = $random !== null
            ? \Closure::fromCallable($random)
            : static fn (): float => random_int(0, PHP_INT_MAX - 1) / PHP_INT_MAX;
    }

    public static function fromConfig(Config $config, ?callable $random = null): self
    {
        return new self($config->backoffBase, $config->backoffCap, $random);
    }

    /** Upper bound of the delay before retry $retry (1-based): min(cap, base * 2^(retry-1)). */
    public function ceiling(int $retry): float
    {
        $exp = max(0, min($retry - 1, 1023));

        return min($this->cap, $this->base * (2.0 ** $exp));
    }

    /** A random delay in [0, ceiling($retry)]. */
    public function delay(int $retry): float
    {
        $r = (float) ($this->random)();
        $r = is_nan($r) ? 0.0 : max(0.0, min(1.0, $r));

        return $r * $this->ceiling($retry);
    }
}
