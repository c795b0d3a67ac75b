"""``python -m api.emulator --seed FILE --bind HOST:PORT``."""

import sys

from api.emulator.cli import main

sys.exit(main())
