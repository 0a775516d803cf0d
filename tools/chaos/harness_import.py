"""Makes tests/integration/harness.py importable as `harness` (the chaos tool
reuses its admin client and process helpers)."""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_IT = _HERE.parents[1] / "tests" / "integration"
if str(_IT) not in sys.path:
    sys.path.insert(0, str(_IT))
