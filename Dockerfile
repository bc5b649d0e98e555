# The voice2fa demo: examples/starlette_app.py on uvicorn, with the console caller (no SignalWire
# account needed; each call's code is printed in the container's output). See the README,
# "Run the demo in a container"; tests/test_container.py runs these commands as written.
#
# Python 3.12.14 on Debian bookworm (slim), pinned by digest as docker-library/repo-info lists it.
FROM python:3.12.14-slim-bookworm@sha256:b64e9d3a71eddaa1b3f80c04abf292b3139e3b7c4dd272d19c31dc1f91194d1b

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The app runs as this user; the code stays owned by root, so the app cannot change it.
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin demo

# The build context is what .dockerignore lets through: the package, the examples, pyproject.toml.
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir '.[examples,redis]'

USER 10001:10001
EXPOSE 8000
# The public home page; slim images have no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/', timeout=4)"]
CMD ["uvicorn", "examples.starlette_app:app", "--host", "0.0.0.0", "--port", "8000"]
