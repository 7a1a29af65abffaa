# One image for every platform: docker compose (one color per file), Render, Kubernetes.
#
# Three stages on one base:
#   train        the full requirements (scikit-learn, skl2onnx): trains and exports the
#                shipped versions with their cards (ONNX export, holdout reference);
#   server-deps  only what a color on the ONNX fast path imports (requirements-server.txt);
#   runtime      those two results on a clean base: no scikit-learn, SciPy, pip or
#                training code; non-root; a health check on /ready.
#
# PYTHON_IMAGE is the base of all three: the official python:3.11-slim by default, or a
# stand-in built from Debian packages where no registry is reachable
# (contrib/docker_images.sh). Their interpreters live in different places (/usr/local/bin
# in the official image, /usr/bin in Debian's), so each stage makes its virtual environment
# with the base's own python3 and the runtime copies it into the same base: the venv's
# interpreter link is valid in both, and PATH puts the venv first either way.
#
# pip's settings and extra CA certificates, when a build needs them, arrive as BuildKit
# secrets (pip_conf, extra_ca) mounted for the install steps only: they are in no layer.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS train
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /build
COPY requirements.txt ./
RUN --mount=type=secret,id=pip_conf,required=false --mount=type=secret,id=extra_ca,required=false \
    --mount=type=bind,source=contrib/pip_in_build.sh,target=/tmp/pip_in_build.sh \
    sh /tmp/pip_in_build.sh /opt/train -r requirements.txt
COPY app/ app/
COPY contrib/train_models.py contrib/
RUN /opt/train/bin/python contrib/train_models.py --models-dir /srv/models

FROM ${PYTHON_IMAGE} AS server-deps
WORKDIR /build
COPY requirements.txt requirements-server.txt ./
RUN --mount=type=secret,id=pip_conf,required=false --mount=type=secret,id=extra_ca,required=false \
    --mount=type=bind,source=contrib/pip_in_build.sh,target=/tmp/pip_in_build.sh \
    sh /tmp/pip_in_build.sh /opt/venv -r requirements-server.txt \
    && /opt/venv/bin/python -m pip uninstall --quiet --yes pip setuptools

FROM ${PYTHON_IMAGE} AS runtime
ARG MODEL_VERSION=v1.0.0
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODEL_VERSION=${MODEL_VERSION} \
    MODELS_DIR=/srv/models \
    COLOR=blue \
    PORT=8080
# No useradd in a minimal Debian base: the account is two lines.
RUN echo "app:x:10001:10001:model server:/srv:/usr/sbin/nologin" >> /etc/passwd \
    && echo "app:x:10001:" >> /etc/group
WORKDIR /srv
COPY --from=server-deps /opt/venv /opt/venv
COPY app/__init__.py app/wsgi.py app/errors.py app/defaults.py app/
COPY app/artifacts/ app/artifacts/
COPY app/server/ app/server/
COPY --from=train /srv/models /srv/models

USER 10001
EXPOSE 8080
# Ready means loaded, verified and warmed (/ready); gunicorn listens on BIND, else on PORT.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = (os.environ.get('BIND') or ':' + os.environ.get('PORT', '8080')).rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/ready', timeout=2)"]
CMD ["gunicorn", "-c", "app/server/gunicorn_conf.py", "app.wsgi:app"]
