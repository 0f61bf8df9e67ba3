import sys

from stemkit.cli import main

sys.exit(main())
