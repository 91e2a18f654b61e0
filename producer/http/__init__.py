"""smsq's HTTP API (FastAPI): the producer's parts.

Each area of the API is an ``APIRouter`` in its own module (``dlr``: the
delivery-report receiver); ``deps`` holds what routes get from the app.
``smsq.api_app.create_app`` composes them into the served app.
"""
