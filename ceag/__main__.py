import sys

from ceag.cli import main

sys.exit(main())
