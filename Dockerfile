# One image for every platform: docker compose (one color per file), Render, Kubernetes.
# The shipped models are trained at build time, with their cards; MODEL_VERSION picks
# the one this container serves (build arg, overridable at run time).
FROM python:3.11-slim

ARG MODEL_VERSION=v1.0.0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODEL_VERSION=${MODEL_VERSION} \
    MODELS_DIR=/srv/models \
    COLOR=blue \
    PORT=8080

WORKDIR /srv
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY app/ app/
COPY contrib/ contrib/
RUN python contrib/train_models.py --models-dir /srv/models \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app

USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('PORT', '8080'), timeout=2)"]
CMD ["gunicorn", "-c", "app/server/gunicorn_conf.py", "app.wsgi:app"]
