"""smsq's HTTP API (FastAPI).

``create_app`` builds the application; each area of the API is an
``APIRouter`` in its own module (``dlr``: the delivery-report receiver).
Serve it with ``uvicorn --factory producer.http.app:create_app``.
"""

from producer.http.app import create_app

__all__ = ["create_app"]
