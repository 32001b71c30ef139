"""The project's error hierarchy.

`TutorError` is the one root. Each subclass also inherits the builtin it stands in for, so callers
that only know Python's own exceptions still catch it. Messages say what to do next; the edges (CLI,
Gradio, HTTP) turn them into an exit message, a toast or an error body.

It lives in `ingest` because `ingest` is the bottom of the import graph: every other package may
import it, and `tutor.errors` re-exports it.
"""

from __future__ import annotations


class TutorError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(TutorError, ValueError):
    """A setting or a course.toml value is wrong; the message names it and the accepted values."""


class CourseNotFoundError(TutorError, FileNotFoundError):
    """The course folder (or an index for a course) does not exist or is empty."""


class LoaderError(TutorError, ValueError):
    """One file could not be read; the message is the reason shown in the ingest summary."""


class IndexMismatchError(TutorError, RuntimeError):
    """The stored index cannot be read by this version (its format), or was built for other settings."""
