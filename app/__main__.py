"""`python -m app`: same as `molmoact2 app`."""

import sys

from molmoact2.cli import main

sys.exit(main(["app", *sys.argv[1:]]))
