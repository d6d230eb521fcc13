import sys

from rtml.cli import main

sys.exit(main())
