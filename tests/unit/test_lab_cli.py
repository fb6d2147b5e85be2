"""``python -m lab``'s argument handling, without starting anything: psql's arguments
reach psql, and an existing run dir's stack and prefix are never silently overridden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import control
from lab.__main__ import main
from lab.errors import LabError

pytestmark = pytest.mark.unit


@pytest.fixture
def execvp(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setenv("PGPASSFILE", "unset-by-test")  # restored afterwards; cmd_psql sets it
    monkeypatch.setattr("os.execvp", lambda file, argv: calls.append(argv))
    return calls


@pytest.mark.parametrize(
    "psql_args",
    [["-c", "select 1"], ["-tAc", "select 1"], ["-X", "-c", "select 1", "-A"], ["-h", "x", "--help"], ["--", "-c"], []],
)
def test_arguments_after_psql_go_to_psql(tmp_path: Path, execvp: list[list[str]], psql_args: list[str]) -> None:
    main(["--stack", "dev", "--run-dir", str(tmp_path), "--prefix", "127.78", "psql", *psql_args])
    [argv] = execvp
    assert argv[0] == "psql"
    assert "host=127.78.2.1" in argv[1]
    assert argv[2:] == psql_args


def test_other_commands_still_refuse_unknown_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--run-dir", str(tmp_path), "status", "-c", "select 1"])
    assert e.value.code == 2
    assert "unrecognized arguments: -c select 1" in capsys.readouterr().err


def existing_lab(run_dir: Path, stack: str = "dev", prefix: str = "127.78") -> Path:
    run_dir.mkdir(exist_ok=True)
    (run_dir / "lab.json").write_text(json.dumps({"stack": stack, "prefix": prefix}))
    return run_dir


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--prefix", "127.5"], ["--prefix asks for prefix 127.5, it was created with prefix 127.78"]),
        (["--stack", "prod"], ["--stack asks for stack prod, it was created with stack dev"]),
        (["--stack", "prod", "--prefix", "127.5"], ["stack prod", "prefix 127.5", "drop --stack and drop --prefix"]),
    ],
)
def test_up_on_a_run_dir_of_another_lab_is_an_error_naming_the_conflict_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: list[str]
) -> None:
    run_dir = existing_lab(tmp_path / "lab")
    assert main(["--run-dir", str(run_dir), *flags, "up"]) == 1
    err = capsys.readouterr().err
    for text in [*named, "--fresh", str(run_dir)]:
        assert text in err
    assert sorted(p.name for p in run_dir.iterdir()) == ["lab.json"], "nothing may be written on a conflict"


def test_an_environment_variable_conflicts_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGHA_LAB_PREFIX", "127.9")
    run_dir = existing_lab(tmp_path / "lab")
    assert main(["--run-dir", str(run_dir), "status"]) == 1
    err = capsys.readouterr().err
    assert "PGHA_LAB_PREFIX asks for prefix 127.9" in err
    assert "unset PGHA_LAB_PREFIX" in err
    assert "--fresh" not in err


@pytest.mark.parametrize(
    "flags", [[], ["--stack", "dev"], ["--prefix", "127.78"], ["--stack", "dev", "--prefix", "127.78"]]
)
def test_matching_or_absent_flags_use_the_existing_lab(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str]
) -> None:
    run_dir = existing_lab(tmp_path / "lab")
    assert main(["--run-dir", str(run_dir), *flags, "status"]) == 3  # not running, but it is that lab
    assert "lab dev is not running" in capsys.readouterr().out


def test_discard_deletes_a_stopped_lab_run_dir(tmp_path: Path) -> None:
    run_dir = existing_lab(tmp_path / "lab")
    (run_dir / "logs").mkdir()
    control.discard(run_dir)
    assert not run_dir.exists()


def test_discard_refuses_a_directory_that_is_not_a_lab(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("x")
    with pytest.raises(LabError, match="not a lab run directory"):
        control.discard(tmp_path)
    assert (tmp_path / "precious.txt").exists()
