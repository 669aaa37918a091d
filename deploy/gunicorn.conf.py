"""Gunicorn settings for all three web services. The service is read from
the app argument ('services.<name>:create_app()'), so that the Procfile and
docker-compose.yml run the very same command; the port comes from
LINLI_<NAME>_PORT (default 8001/8002/8003/8004) and the address from LINLI_BIND
(127.0.0.1 locally, 0.0.0.0 in the container)."""
import os
import sys

from services.common.settings import port

_service = next((a.split(":")[0].split(".")[1] for a in sys.argv if a.startswith("services.")), "requests")

bind = f"{os.environ.get('LINLI_BIND', '127.0.0.1')}:{port(_service)}"
workers = int(os.environ.get("LINLI_WEB_WORKERS", "2"))
worker_class = "sync"
timeout = 30
graceful_timeout = 20
proc_name = f"linli-{_service}"
# Web requests return right after their commit; a thread publishes the
# events (services/common/outbox.py). Gunicorn puts it in the environment
# before the app loads; an operator's own setting wins.
raw_env = [] if "LINLI_PUBLISH_IN_BACKGROUND" in os.environ else ["LINLI_PUBLISH_IN_BACKGROUND=1"]
accesslog = None  # the app logs each request itself, without query strings


def post_worker_init(worker):
    """Refuse to serve in production while demo data can sign in: a worker
    that raises here fails to boot, and gunicorn stops."""
    from services.common.factory import check_before_serving

    check_before_serving(worker.wsgi)
