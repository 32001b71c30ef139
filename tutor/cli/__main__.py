import sys

from tutor.cli.main import app

sys.exit(app())
