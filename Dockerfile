# syntax=docker/dockerfile:1
# Two images from one file, both installed from modq's wheel (models, policy and migrations
# ship inside it) by deploy/install-runtime.sh, the script tests/test_wheel_install.py runs:
#   docker build --target cpu -t modq:cpu .   (onnxruntime)
#   docker build --target gpu -t modq:gpu .   (onnxruntime-gpu on CUDA 12 + cuDNN 9)
# State (the console's secret, recover's heartbeat) lives in /var/lib/modq, the only folder
# the unprivileged user writes. docs/deployment.md.

# --- the wheel -------------------------------------------------------------------------------
FROM python:3.11-slim AS wheel
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY modq modq
COPY training training
RUN pip wheel -q --no-deps -w /wheels .

# --- CPU workers, the console, recover, migrate ----------------------------------------------
FROM python:3.11-slim AS cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 MODQ_DATA_DIR=/var/lib/modq MODQ_METRICS_PORT=9100
COPY deploy/install-runtime.sh /usr/local/bin/modq-install-runtime
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    PYTHON=python3 modq-install-runtime /wheels/modq-*.whl \
    && install -d -o nobody -g nogroup /var/lib/modq
USER nobody
WORKDIR /var/lib/modq
# A worker's /healthz on its metrics port; compose gives the console and recover their own.
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 CMD ["modq", "health"]
ENTRYPOINT ["modq"]
CMD ["worker"]

# --- GPU workers -----------------------------------------------------------------------------
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 AS gpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_BREAK_SYSTEM_PACKAGES=1 \
    MODQ_DATA_DIR=/var/lib/modq MODQ_METRICS_PORT=9100
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip \
    && rm -rf /var/lib/apt/lists/*
COPY deploy/install-runtime.sh /usr/local/bin/modq-install-runtime
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    PYTHON=python3 modq-install-runtime --gpu /wheels/modq-*.whl \
    && install -d -o nobody -g nogroup /var/lib/modq
USER nobody
WORKDIR /var/lib/modq
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 CMD ["modq", "health"]
ENTRYPOINT ["modq"]
CMD ["worker", "--gpu", "0"]
