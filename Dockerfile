FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# DEBUG only so that no HUB_SECRET_KEYS is needed to collect static files.
RUN SECRET_KEY=build-only DEBUG=1 python manage.py collectstatic --no-input
EXPOSE 8000
CMD ["gunicorn", "hub.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--worker-class", "receivers.worker.HubWorker", "--threads", "4", "--reuse-port"]
