# NFOD Response: the API and the scheduler (same image, different command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/nfod

# Dependencies first (better layer caching), then the code.
COPY pyproject.toml README.md ./
COPY api ./api
COPY services ./services
COPY models ./models
COPY migrations ./migrations
COPY alembic.ini ./
COPY web ./web
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /srv/nfod --shell /usr/sbin/nologin nfod \
    && chown -R nfod /srv/nfod

USER nfod
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"

CMD ["nfod", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-scheduler"]
