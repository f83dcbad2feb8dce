# The worker / simulator / test image. torch comes from PyPI (a CUDA build that also runs on CPU).
# EXTRAS picks the optional dependencies: "simulate" (default: worker, replay and simulator),
# "dev" for the integration-test service (pytest and the training stack), "train" to train models.
FROM python:3.11-slim

ARG EXTRAS=simulate
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml constraints.txt README.md ./
COPY stream_app ./stream_app
COPY models ./models
COPY configs ./configs
COPY checkpoints ./checkpoints
COPY tests ./tests
COPY bench ./bench
RUN pip install -c constraints.txt -e ".[${EXTRAS}]"

RUN useradd --create-home --uid 10001 app && chown -R app /app
USER app
EXPOSE 9464
ENTRYPOINT ["stream-app"]
CMD ["worker"]
