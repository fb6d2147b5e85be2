"""Exceptions of the client, and the walk down an exception chain to the psycopg error
(Python twin of ``InvalidConfig.php`` and ``FailoverTimeout.php``; ``IoTimeout`` has no
PHP counterpart)."""

from __future__ import annotations

import psycopg

_MAX_CHAIN = 10


class InvalidConfig(ValueError):
    """Every problem of a configuration, each with its key, raised once."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = list(problems)
        n = len(self.problems)
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {k}: {m}" for k, m in self.problems)
        super().__init__(f"Invalid pgha_client configuration{where}: {n} problem{'s' if n != 1 else ''}\n{lines}")

    @property
    def keys(self) -> set[str]:
        return {k for k, _ in self.problems}


class IoTimeout(psycopg.OperationalError):
    """A ping or ``fn`` got no answer within ``io_timeout``: the connection was abandoned
    (its socket shut down). A failover-class error; the statement may have been applied."""


class FailoverTimeout(Exception):
    """The deadline of a connect()/run() call passed while failover errors kept happening.
    ``__cause__`` (and :attr:`last_error`) is the last error seen."""

    def __init__(self, attempts: int, elapsed: float, deadline: float, last_error: BaseException):
        self.attempts = attempts
        self.elapsed = elapsed
        self.deadline = deadline
        self.last_error = last_error
        s = "" if attempts == 1 else "s"
        super().__init__(
            f"gave up after the {deadline:.3g}s failover deadline: {attempts} attempt{s} in {elapsed:.3f}s; last error: {last_error}"
        )

    @property
    def sqlstate(self) -> str | None:
        return sqlstate(self.last_error)


def find_psycopg_error(e: BaseException) -> psycopg.Error | None:
    """The first psycopg.Error in e's chain (e, then __cause__ / __context__)."""
    cur: BaseException | None = e
    for _ in range(_MAX_CHAIN):
        if cur is None:
            return None
        if isinstance(cur, psycopg.Error):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def sqlstate(e: BaseException) -> str | None:
    err = find_psycopg_error(e)
    return err.sqlstate if err is not None else None
