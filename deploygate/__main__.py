import sys

from deploygate.cli import main

sys.exit(main())
