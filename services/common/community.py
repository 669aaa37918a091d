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


def buildings(path: str | None = None) -> list[dict]:
    """The community's buildings (the configured file unless `path`)."""
    from .settings import community_file

    return load(path or community_file())["buildings"]


def documented_building(**metadata) -> dict:
    """A building field's OpenAPI metadata: the codes the community data
    seeds into the database, which is what the schema checks against."""
    return {"enum": [b["code"] for b in buildings()], **metadata}


def documented_unit(**metadata) -> dict:
    """A unit (stairwell) field's OpenAPI metadata: every unit some building
    has; which ones a building has is said in words (OpenAPI cannot)."""
    units = list(dict.fromkeys(u for b in buildings() for u in b["units"]))
    return {"enum": units, "description": "One of the building's own units (stairwells).", **metadata}
