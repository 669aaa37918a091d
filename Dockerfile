# One image for every Linli process; docker-compose.yml starts it with the
# same commands as the Procfile (web under gunicorn, Celery workers, beat).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LINLI_DATA_DIR=/data \
    LINLI_BIND=0.0.0.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY services ./services
COPY data ./data
COPY deploy ./deploy
COPY Procfile ./
RUN pip install -e . \
 && pybabel compile -d services/common/translations \
 && useradd --system --home /app linli \
 && mkdir -p /data && chown linli /data

USER linli
EXPOSE 8001 8002 8003
CMD ["sh", "deploy/init-all.sh"]
