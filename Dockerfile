# syntax=docker/dockerfile:1
# The lakehouse image: the official Airflow 3 image line + this project and its locked
# dependencies. Multi-stage: uv resolves and installs in a builder; the runtime stage gets
# only the virtual environment and the code, and runs as the image's non-root `airflow` user.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11

FROM ${AIRFLOW_IMAGE} AS builder
USER root
COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /usr/local/bin/uv
WORKDIR /opt/lakehouse
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/lakehouse/.venv
COPY pyproject.toml uv.lock README.md ./
# dependencies first (cached while only the code changes), then the project itself
RUN uv sync --frozen --no-dev --no-install-project
COPY lakehouse ./lakehouse
COPY pipelines ./pipelines
RUN uv sync --frozen --no-dev

FROM ${AIRFLOW_IMAGE} AS runtime
USER root
RUN mkdir -p /opt/lakehouse/data && chown -R airflow:0 /opt/lakehouse
USER airflow
WORKDIR /opt/lakehouse
COPY --from=builder --chown=airflow:0 /opt/lakehouse/.venv ./.venv
COPY --chown=airflow:0 lakehouse ./lakehouse
COPY --chown=airflow:0 pipelines ./pipelines
COPY --chown=airflow:0 configs ./configs
COPY --chown=airflow:0 dags ./dags
ENV PATH=/opt/lakehouse/.venv/bin:$PATH \
    LAKEHOUSE_HOME=/opt/lakehouse \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/lakehouse/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    PYTHONPATH=/opt/lakehouse
# the api-server answers /api/v2/monitor/health; workers and schedulers override this check
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=5 \
    CMD curl --fail --silent http://localhost:8080/api/v2/monitor/health || exit 1
ENTRYPOINT ["/usr/bin/dumb-init", "--", "/entrypoint"]
CMD ["airflow", "version"]
