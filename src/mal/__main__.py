import sys

from mal.cli import main

sys.exit(main())
