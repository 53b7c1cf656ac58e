import sys

from molmoact2.cli import main

sys.exit(main())
