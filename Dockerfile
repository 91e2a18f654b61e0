# One image for every smsq process (api, workers, beat, simulator, flower,
# migrate); docker-compose.yml picks the command.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models ./models
COPY providers ./providers
COPY producer ./producer
COPY worker ./worker
COPY smsq ./smsq
# A wheel of smsq and its dependencies (with the ops extra: Flower), built
# here so the runtime image carries no compiler and no source tree.
RUN pip wheel --wheel-dir /wheels ".[ops]"

FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SMSQ_LOG_JSON=1
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels "smsq[ops]" && rm -rf /wheels \
    && useradd --system --create-home --home-dir /var/lib/smsq --uid 10001 smsq
# Celery warns (and refuses pickle) as root; beat keeps its schedule here.
USER smsq
WORKDIR /var/lib/smsq
EXPOSE 8000 8025 5555
CMD ["smsq", "--help"]
