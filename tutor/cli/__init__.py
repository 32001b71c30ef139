"""The `tutor` command line (`main.py`); `python -m tutor.cli` runs it too.

`app` is imported on first use, not here: `eval.commands` and `serving.commands` import
`tutor.cli.options`, and building `app` registers their commands, so an eager import would have a
package that is imported first register itself half-initialised.
"""


def __getattr__(name: str):
    if name == "app":
        from tutor.cli.main import app

        return app
    raise AttributeError(f"module 'tutor.cli' has no attribute {name!r}")
