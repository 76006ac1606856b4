# The project's own production services (power-quality analytics, live page): `energytwin <command>`.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY . /app
RUN pip install . && useradd --system --uid 10001 energytwin
USER energytwin
ENTRYPOINT ["energytwin"]
CMD ["--help"]
