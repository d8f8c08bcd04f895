FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY governance ./governance
COPY ledger ./ledger
RUN pip install --no-cache-dir .
ENTRYPOINT ["plangate"]
CMD ["worker"]
