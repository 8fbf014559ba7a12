# syntax=docker/dockerfile:1
# The decision service image: FastAPI + onnxruntime serving the shipped DQN policy.
# Build from the repository root:  docker build -t canary-agent:latest .
# Only the serving dependencies are installed (`pip install .`, no extras): no torch,
# stable-baselines3 or gymnasium in the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the package and its serving dependencies -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY decision_service/ decision_service/
RUN pip install --no-cache-dir . \
    && python -c "import decision_service, onnxruntime, fastapi" \
    && ! python -c "import torch" 2>/dev/null

# --- runtime: the virtualenv, the model, a non-root user ---------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="canary-agent" \
      org.opencontainers.image.description="RL canary analysis for Argo Rollouts: the decision service" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY models/canary-dqn.onnx /app/models/canary-dqn.onnx
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODEL_PATH=/app/models/canary-dqn.onnx
WORKDIR /app
# Numeric, so Kubernetes' runAsNonRoot can verify it (the chart runs as the same 10001).
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["python", "-m", "decision_service", "--host", "0.0.0.0", "--port", "8080"]
