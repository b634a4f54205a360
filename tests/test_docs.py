"""The README documents every setting and every command (they drift apart otherwise)."""

from __future__ import annotations

from pathlib import Path

from typer.main import get_command

from recsys_lite.cli import app
from recsys_lite.config import Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in README]
    assert missing == []


def test_every_command_is_in_the_readme() -> None:
    commands = get_command(app).commands  # type: ignore[attr-defined]
    missing = [name for name in commands if f"recsys-lite {name}" not in README]
    assert missing == []
