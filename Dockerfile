# infusion-charges worker image: build wheels in one stage, install them in a slim final stage
# with no compilers, run as an unprivileged user with a read-only root filesystem in mind.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY coding_core ./coding_core
COPY mapping ./mapping
COPY connectors ./connectors
RUN pip install --no-cache-dir --upgrade pip wheel \
 && pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["infusion-charges"]
CMD ["run", "--config", "/etc/infusion-charges/worker.yaml"]
