# The worker / simulator / test image. CPU torch by default; for a GPU host build with
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml constraints.txt README.md ./
COPY stream_app ./stream_app
COPY models ./models
COPY configs ./configs
COPY checkpoints ./checkpoints
COPY tests ./tests
COPY bench ./bench
RUN pip install -c constraints.txt -e '.[dev]'

RUN useradd --create-home --uid 10001 app && chown -R app /app
USER app
EXPOSE 9464
ENTRYPOINT ["stream-app"]
CMD ["worker"]
