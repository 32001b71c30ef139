"""The `tutor` command line (`main.py`); `python -m tutor.cli` runs it too."""

from tutor.cli.main import app

__all__ = ["app"]
