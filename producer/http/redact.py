"""Keep secrets in query strings out of access logs.

brand sends its callback key as ``?key=...`` (the vendor's design), and an
access log line (uvicorn's, or any logger given the path) would keep it.
:class:`RedactQueryKeys` masks such parameters in a log record's arguments;
``create_app`` installs it on uvicorn's access logger.
"""

from __future__ import annotations

import logging
import re

SECRET_PARAMS = ("key", "apiKey")
MASK = "***"
_SECRET = re.compile(r"([?&](?:" + "|".join(SECRET_PARAMS) + r")=)[^&#\s\"]*")


def redact_query(text: str) -> str:
    """``/dlr/brand?key=abc&smsID=1`` -> ``/dlr/brand?key=***&smsID=1``."""
    return _SECRET.sub(r"\g<1>" + MASK, text)


class RedactQueryKeys(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_query(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        elif not record.args and isinstance(record.msg, str):
            # Only a message without arguments: masking a "%s" would break it.
            record.msg = redact_query(record.msg)
        return True


def install(logger_name: str = "uvicorn.access") -> None:
    """Add the filter to ``logger_name`` once."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactQueryKeys) for f in logger.filters):
        logger.addFilter(RedactQueryKeys())
