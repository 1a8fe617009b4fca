"""``python -m guardvl_sdk.cli`` runs the ``guardvl`` command."""

import sys

from guardvl_sdk.cli import main

sys.exit(main())
