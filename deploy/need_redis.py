"""make run's one prerequisite besides Python: a Redis it can reach. Says
what to do when there is none, instead of seven processes failing at once."""
import os
import sys

import redis

url = os.environ.get("LINLI_REDIS_URL", "redis://127.0.0.1:6379/0")
try:
    redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
except redis.RedisError as exc:
    sys.exit(f"make run needs Redis at {url} ({type(exc).__name__}).\n"
             "Start one, e.g. `sudo apt-get install redis-server` (Debian starts it on 6379), or\n"
             "`redis-server --daemonize yes --port 6379`, or point LINLI_REDIS_URL at yours.")
