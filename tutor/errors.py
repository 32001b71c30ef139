"""Errors of the answering side; the root `TutorError` and the shared ones live in `ingest.errors`."""

from ingest.errors import ConfigError, CourseNotFoundError, IndexMismatchError, LoaderError, TutorError

__all__ = ["ConfigError", "CourseNotFoundError", "IndexMismatchError", "LoaderError", "TutorError"]
