"""Every test says what it needs: exactly one kind marker (pyproject.toml lists them),
set per module with ``pytestmark``. A test with none, or with two, fails the collection,
so ``-m unit`` / ``-m tools`` / ``-m components`` / ``-m lab`` together select every test
exactly once."""

from __future__ import annotations

import pytest

KINDS = ("unit", "tools", "components", "lab", "machines")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        kinds = sorted({m.name for m in item.iter_markers() if m.name in KINDS})
        if len(kinds) != 1:
            wrong.append(f"  {item.nodeid}: {', '.join(kinds) or 'no kind marker'}")
    if wrong:
        raise pytest.UsageError(
            f"{len(wrong)} test(s) without exactly one of the markers {', '.join(KINDS)} "
            "(set `pytestmark = pytest.mark.<kind>` in the module):\n" + "\n".join(wrong)
        )
