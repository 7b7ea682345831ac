FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# DEBUG only so that no HUB_SECRET_KEYS is needed to collect static files.
RUN SECRET_KEY=build-only DEBUG=1 python manage.py collectstatic --no-input
# The receive fast path (receivers/fastpath/) on Granian; PORT changes the port.
ENV HUB_FAST_PATH=1
EXPOSE 8000
CMD ["sh", "-c", "exec granian --interface asgi --http 1 --no-ws --loop uvloop --http1-header-read-timeout 10000 --host 0.0.0.0 --port ${PORT:-8000} --workers 2 hub.asgi:application"]
