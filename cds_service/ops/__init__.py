"""Running the service: logs, metrics, health endpoints and the gunicorn server."""
