from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import make_asgi_app
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import Mount

from voice2fa_middleware import Voice2FAMiddleware


def identify(conn: HTTPConnection) -> tuple[str, str] | None:
    user = conn.cookies.get("user")
    return (user, "+12025550143") if user else None


meters = MeterProvider(metric_readers=[PrometheusMetricReader()])
app = Starlette(routes=[Mount("/metrics", make_asgi_app())])  # scrape /metrics (keep it internal)
app.add_middleware(Voice2FAMiddleware, identify=identify, protect=["/account"], meter_provider=meters)
