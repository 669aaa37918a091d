"""The community service's API schemas (marshmallow): what its staff API
answers and accepts. Payloads of tasks are in the shared contract."""
from __future__ import annotations
