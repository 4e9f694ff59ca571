# followup service image (DICOM listener, workers, API). CPU-only torch.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends dcmtk && rm -rf /var/lib/apt/lists/*
WORKDIR /app
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY followup ./followup
COPY workers ./workers
RUN pip install --no-cache-dir '.[postgres]' flower
# /data (images, reports, the registry and its patient-ref key) is the service user's alone
RUN useradd --create-home --uid 1000 followup && mkdir /data && chown followup /data && chmod 700 /data
USER followup
ENV FOLLOWUP_DATA_DIR=/data
EXPOSE 11112 8443
CMD ["followup", "--help"]
