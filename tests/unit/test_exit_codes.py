"""One exit-code table: each code is carried by one exception class, and the README and `--help` list
the same codes with the same meaning a CI job would act on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pushctl import errors
from pushctl.cli import main as main_mod
from pushctl.errors import EXIT_CODES, InternalError, PushctlError, error_for_exit

REPO = Path(__file__).resolve().parents[2]


def _readme_codes() -> set[int]:
    table = REPO.joinpath("README.md").read_text().split("Exit codes (every command):", 1)[1].split("\n\n", 2)[1]
    return {int(m) for m in re.findall(r"^\| (\d+) \|", table, flags=re.M)}


def _help_codes() -> set[int]:
    epilog = (main_mod.__doc__ or "").split("Exit codes (every command):", 1)[1]
    return {int(m) for m in re.findall(r"^  (\d+) ", epilog, flags=re.M)}


def test_readme_and_help_list_exactly_the_codes_of_the_exception_classes() -> None:
    assert _readme_codes() == {0, *EXIT_CODES}
    assert _help_codes() == {0, *EXIT_CODES}


def test_every_error_class_has_a_code_in_the_table() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, PushctlError)]
    assert {c.exit_code for c in classes} <= set(EXIT_CODES)
    assert 1 not in {c.exit_code for c in classes if c not in (errors.SloBreached,)}  # 1 means "SLO breached"


@pytest.mark.parametrize("code", sorted(EXIT_CODES))
def test_each_code_reaches_the_shell_with_one_line(
    code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def app() -> None:
        raise error_for_exit(code, f"what happened ({code})", hint="what to do")

    monkeypatch.setattr(main_mod, "app", app)
    with pytest.raises(SystemExit) as exit_info:
        main_mod.main()
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    assert f"error: what happened ({code})" in err and "hint: what to do" in err


def test_a_crash_is_exit_3_never_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def app() -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setenv("PUSHCTL_RUN_DIR", str(tmp_path))
    monkeypatch.setattr(main_mod, "app", app)
    with pytest.raises(SystemExit) as exit_info:
        main_mod.main()
    assert exit_info.value.code == InternalError.exit_code == 3


def test_an_unknown_code_is_an_internal_error() -> None:
    assert isinstance(error_for_exit(42, "?"), InternalError)
