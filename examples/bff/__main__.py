"""``python -m bff`` (from ``examples/``): serve the BFF with uvicorn."""

import sys

from .app import main

sys.exit(main())
