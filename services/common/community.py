"""The community layout (grids, buildings, units, hallway and grid leaders)
comes from one data file in the repository, which each service that needs it
seeds into its own tables."""
from __future__ import annotations

import json
from functools import lru_cache


@lru_cache(maxsize=4)
def load(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
