"""One PostgreSQL node (Python twin of ``Host.php``)."""

from __future__ import annotations

from dataclasses import dataclass

from . import defaults


@dataclass(frozen=True)
class Host:
    """One PostgreSQL node: a DNS name or IP literal, and a port."""

    host: str
    port: int = defaults.PORT

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
