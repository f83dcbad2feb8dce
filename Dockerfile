# Two images from one file: the stage "runtime" (the worker, replay and simulator: the service's
# dependencies plus the "simulate" extra) and the stage "test" (the runtime plus pytest, the training
# stack and redis-server, for the compose service integration-tests).
#
# Build arguments:
#   BASE_IMAGE     a Debian-based image with Python 3.11+ (python:3.11-slim by default; `make test-compose`
#                  passes a Debian image built locally, for machines that cannot pull images)
#   WHEELHOUSE     a folder of the build context holding every wheel needed: pip installs from it alone
#                  (--no-index), so the build needs no package index. Empty (default): the index.
#   PIP_INDEX_URL  the package index when WHEELHOUSE is empty (default PyPI).
# torch is the default Linux wheel from PyPI, a CUDA build that also runs on CPU; its NVIDIA libraries
# are most of the image's size.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS runtime
ARG WHEELHOUSE=""
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
WORKDIR /app
RUN python3 -m venv /opt/venv && useradd --create-home --uid 10001 app

# The dependencies first, in a layer of their own: a change of the source or README does not reinstall them.
# The build context is mounted (not copied) at /context, so a wheelhouse does not end up in a layer.
COPY pyproject.toml constraints.txt compose/requirements_of.py ./
RUN --mount=type=bind,target=/context \
    python3 requirements_of.py simulate > /tmp/requirements.txt \
    && pip install ${WHEELHOUSE:+--no-index --find-links /context/$WHEELHOUSE} -c constraints.txt -r /tmp/requirements.txt
COPY README.md ./
COPY stream_app ./stream_app
COPY models ./models
COPY configs ./configs
COPY checkpoints ./checkpoints
RUN --mount=type=bind,target=/context \
    pip install ${WHEELHOUSE:+--no-index --find-links /context/$WHEELHOUSE} --no-deps -e . \
    && chown -R app /app
USER app
EXPOSE 9464
ENTRYPOINT ["stream-app"]
CMD ["worker"]

FROM runtime AS test
ARG WHEELHOUSE=""
ARG PIP_INDEX_URL=https://pypi.org/simple
USER root
# redis-server: the Redis fault tests start a Redis of their own to kill and restart
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,target=/context \
    python3 requirements_of.py dev > /tmp/requirements.txt \
    && pip install ${WHEELHOUSE:+--no-index --find-links /context/$WHEELHOUSE} -c constraints.txt -r /tmp/requirements.txt
COPY tests ./tests
COPY bench ./bench
RUN chown -R app /app
USER app
ENTRYPOINT ["pytest", "-p", "no:cacheprovider"]
CMD ["-m", "integration"]
