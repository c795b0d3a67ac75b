"""``python -m lambda_testbed.emulator --seed FILE --bind HOST:PORT``."""

import sys

from lambda_testbed.emulator.cli import main

sys.exit(main())
