import sys

from guardmail.cli import main

sys.exit(main())
