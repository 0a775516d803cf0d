"""Where the repository and the built binaries are (ROLEGRID_BUILD_DIR
overrides the build dir)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("ROLEGRID_BUILD_DIR", REPO / "build"))
ROLEGRID = BUILD / "programs" / "rolegrid"
ROLEGRIDCTL = BUILD / "programs" / "rolegridctl"
