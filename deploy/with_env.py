"""Run a command with the settings of .env beneath the environment's:
a variable the operator set explicitly always wins over .env, as in docker
compose and every twelve-factor tool (honcho alone would let .env win, so
make run gives it an empty file and this environment instead).

    python deploy/with_env.py honcho start -e /dev/null
"""
import os
import sys
from pathlib import Path

from dotenv import dotenv_values

env_file = Path(os.environ.get("LINLI_ENV_FILE", ".env"))
values = dotenv_values(env_file) if env_file.exists() else {}
merged = {**{k: v for k, v in values.items() if v is not None}, **os.environ}
os.execvpe(sys.argv[1], sys.argv[1:], merged)
