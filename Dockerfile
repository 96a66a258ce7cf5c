# Tally on the real stack: `docker compose up` (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv
# DejaVu for the symbols the Noto fonts lack (invoice PDFs, adapters/pdf/fonts.py)
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY domain ./domain
COPY commands ./commands
COPY projections ./projections
COPY adapters ./adapters
RUN uv sync --frozen --no-dev
ENV PATH=/app/.venv/bin:$PATH
EXPOSE 8000
CMD ["tally", "serve", "--host", "0.0.0.0", "--port", "8000"]
