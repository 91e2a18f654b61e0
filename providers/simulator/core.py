"""The simulator: one request in, one response out, no I/O.

:meth:`Simulator.handle` is a plain function of the request, the
configuration, a clock and a seeded ``random.Random``, so every behaviour
(faults included) is reproducible in a unit test with a fake clock. What
it cannot do itself -- waiting ``delay`` seconds, never answering, calling a
delivery-report URL later -- it describes in its answer (``SimResponse.delay``,
``SimResponse.hang``) or queues (:meth:`Simulator.reports_due`), and the ASGI
app or the mock transport carries it out.

Checks run in the vendor's order: account and key first (a throttled or
overloaded provider still knows who you are), then the injected faults
(outage, hang, HTTP 500, rate limit, queue full), then the content.

One lock guards the state because the HTTP server runs the simulator in its
own thread while a test or the demo reads stats from another.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from providers.brand import protocol as brand_wire
from providers.codes import RETRYABLE_CODES, Code, Rejection
from providers.panelsms import protocol as panelsms_wire
from providers.simulator import brand, panelsms
from providers.simulator.config import SimConfig
from providers.simulator.stats import Stats
from providers.simulator.wire import (
    Report,
    SimRequest,
    SimResponse,
    from_answer,
    json_response,
    request_params,
    text_response,
)

LAST_REQUESTS = 100  # size of the debug ring served at GET /_requests
_SECRET_PARAMS = panelsms_wire.SECRET_PARAMS | brand_wire.SECRET_PARAMS

Handler = Callable[[SimRequest], SimResponse]


def digits(number: str) -> str:
    """A destination as the stats count it: without the '+', as brand sends it."""
    return number.removeprefix("+")


Status = panelsms_wire.ReportStatus
StatusId = brand_wire.StatusId


class Simulator:
    """Both provider APIs, fault injection, stats and the reports owed."""

    def __init__(self, config: SimConfig | None = None, clock: Callable[[], float] = time.time):
        self.config = config if config is not None else SimConfig()
        self.clock = clock
        self._lock = threading.RLock()
        self._rng = random.Random(self.config.seed)
        self._stats = Stats()
        self._owed: list[tuple[float, int, Report]] = []  # heap by due time
        self._owed_seq = itertools.count()
        # Provider ids: a per-instance prefix so a restarted simulator does not
        # hand out ids that an earlier run's messages already carry.
        self._id_prefix = str(self._rng.randrange(100_000, 1_000_000))
        self._id_seq = itertools.count(1)
        self._window = -1  # the clock second the rate limit is counting
        self._window_count = 0
        self.last_requests: deque[dict[str, Any]] = deque(maxlen=LAST_REQUESTS)
        self._routes: dict[str, dict[str, Handler]] = {
            panelsms.ROUTE: {"GET": self._panelsms, "POST": self._panelsms},
            brand.ROUTE: {"GET": self._brand, "POST": self._brand},
            "/_stats": {"GET": self._get_stats, "DELETE": self._reset_stats},
            "/_stats/reset": {"POST": self._reset_stats},
            "/_config": {"GET": self._get_config, "POST": self._patch_config},
            "/_requests": {"GET": self._get_requests},
        }

    # --- public API -------------------------------------------------------

    def handle(self, req: SimRequest) -> SimResponse:
        methods = self._routes.get(req.path)
        with self._lock:
            if methods is None:
                self._stats.request("other")
                return text_response(404, "Not Found")
            handler = methods.get(req.method.upper())
            if handler is None:
                return text_response(405, "Method Not Allowed", {"allow": ", ".join(methods)})
            return handler(req)

    def reports_due(self, now: float | None = None) -> list[Report]:
        """Pop the delivery reports whose time has come, earliest first."""
        now = self.clock() if now is None else now
        due: list[Report] = []
        with self._lock:
            while self._owed and self._owed[0][0] <= now:
                due.append(heapq.heappop(self._owed)[2])
        return due

    def owe_again(self, report: Report) -> None:
        """A report popped by :meth:`reports_due` but not sent (the dispatcher
        stopped first): owed again, at its old due time, so it goes out first."""
        with self._lock:
            self._owe(report)

    def record_dlr(self, delivered: bool, to: str = "") -> None:
        """Count a report the dispatcher sent (or gave up on), by destination if known."""
        with self._lock:
            self._stats.report(delivered, to)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return self._stats.to_dict(dlr_pending=len(self._owed))

    def reset_stats(self) -> None:
        """Forget counts and the request ring; reports still owed stay owed."""
        with self._lock:
            self._stats.reset()
            self.last_requests.clear()

    # --- panelsms ---------------------------------------------------------

    def _panelsms(self, req: SimRequest) -> SimResponse:
        self._stats.request(panelsms.ROUTE)
        now = self.clock()
        delay = self._latency()
        params: dict[str, str] = {}
        rtype = "plain"
        try:
            params = request_params(req)
            rtype = panelsms_wire.response_type(params)
            panelsms.authenticate(params, self.config)
            if (fault := self._fault(now)) is not None:
                return self._finish(fault, delay, panelsms.ROUTE, params, None)
            self._admit(now, 1)
            submit = panelsms.validate(params, now, self.config.tzinfo)
            self._deliverable([submit.to])
        except Rejection as rejection:
            response = from_answer(
                panelsms_wire.render_answer(
                    rtype, code=rejection.code, headers=self._retry_after(rejection.code)
                )
            )
            return self._reject(response, delay, panelsms.ROUTE, params, rejection)
        tid = submit.transaction_id or self._new_id()
        roaming = self.config.roaming(submit.to)
        self._stats.panelsms_part(tid, digits(submit.to), submit.seq, int(now), roaming)
        url = submit.callback_url or self.config.panelsms_callback_url
        if submit.confirmation and url:
            self._owe_panelsms(url, tid, submit.to, submit.send_at or now)
        code = Code.ROAMING if roaming else None
        response = from_answer(panelsms_wire.render_answer(rtype, code=code, transaction_id=tid))
        return self._finish(response, delay, panelsms.ROUTE, params, code)

    def _owe_panelsms(self, url: str, tid: str, to: str, start: float) -> None:
        if self.config.dlr_sent_first:
            payload = panelsms_wire.report_payload(tid, Status.SENT, to, start, None)
            self._owe(Report(url, "POST", payload, start, "panelsms", digits(to)))
        due = self._dlr_due(start)
        if self._delivered():
            payload = panelsms_wire.report_payload(tid, Status.DELIVERED, to, due, None)
        else:
            payload = panelsms_wire.report_payload(
                tid, Status.UNDELIVERED, to, due, self.config.dlr_error_code
            )
        self._owe(Report(url, "POST", payload, due, "panelsms", digits(to)))

    # --- brand ------------------------------------------------------------

    def _brand(self, req: SimRequest) -> SimResponse:
        self._stats.request(brand.ROUTE)
        now = self.clock()
        delay = self._latency()
        params: dict[str, str] = {}
        try:
            params = request_params(req)
            brand.authenticate(params, self.config)
            if (fault := self._fault(now)) is not None:
                return self._finish(fault, delay, brand.ROUTE, params, None)
            numbers = brand.numbers_of(params)
            self._admit(now, len(numbers))
            submit = brand.validate(params, numbers, self.config, now)
            self._deliverable(submit.numbers)
        except Rejection as rejection:
            code = rejection.code
            response = from_answer(
                brand_wire.render_error(code, rejection.detail, self._retry_after(code))
            )
            return self._reject(response, delay, brand.ROUTE, params, rejection)
        sms_ids = [(number, self._new_id()) for number in submit.numbers]
        self._stats.brand_numbers(submit.numbers, int(now))
        if self.config.brand_callback_url:
            for number, sms_id in sms_ids:
                self._owe_brand(sms_id, number, submit.send_at or now)
        accepted = from_answer(brand_wire.render_accepted(sms_ids))
        return self._finish(accepted, delay, brand.ROUTE, params, None)

    def _owe_brand(self, sms_id: str, number: str, start: float) -> None:
        cfg = self.config
        assert cfg.brand_callback_url is not None
        key, tz = cfg.brand_callback_key, cfg.tzinfo
        if cfg.dlr_sent_first:
            query = brand_wire.callback_params(key, sms_id, number, StatusId.SENT, start, tz)
            self._owe(Report(cfg.brand_callback_url, "GET", query, start, "brand", digits(number)))
        due = self._dlr_due(start)
        status = StatusId.DELIVERED if self._delivered() else StatusId.FAILED
        query = brand_wire.callback_params(key, sms_id, number, status, due, tz)
        self._owe(Report(cfg.brand_callback_url, "GET", query, due, "brand", digits(number)))

    # --- shared -----------------------------------------------------------

    def _fault(self, now: float) -> SimResponse | None:
        """An injected outage, hang or HTTP 500, or None to go on."""
        cfg = self.config
        if cfg.outages and cfg.in_outage(now):
            self._stats.outages += 1
            return text_response(503, "Service Unavailable")
        if cfg.hang_ratio and self._rng.random() < cfg.hang_ratio:
            self._stats.hangs += 1
            return SimResponse(504, hang=True)
        if cfg.error_5xx_ratio and self._rng.random() < cfg.error_5xx_ratio:
            self._stats.http_5xx += 1
            return text_response(500, "Internal Server Error")
        return None

    def _admit(self, now: float, messages: int) -> None:
        """Rate limit (code 7), then queue full (code 6), then count the messages.

        The limit counts messages admitted in the current clock second; a
        request is admitted whole or not at all, so one larger than the limit
        is always throttled.
        """
        cfg = self.config
        second = int(now)
        if second != self._window:
            self._window, self._window_count = second, 0
        if cfg.rate_limit is not None and self._window_count + messages > cfg.rate_limit:
            raise Rejection(Code.THROTTLED, f"more than {cfg.rate_limit} messages in this second")
        if cfg.queue_full_ratio and self._rng.random() < cfg.queue_full_ratio:
            raise Rejection(Code.QUEUE_FULL, "queue full (injected)")
        self._window_count += messages

    def _deliverable(self, numbers: list[str]) -> None:
        """Barred destinations (code 11), then credit (code 9), then charge.

        Checked after the content, like an SMSC that routes and bills a valid
        message only.
        """
        cfg = self.config
        if cfg.barred_prefixes:
            for number in numbers:
                if cfg.barred(number):
                    raise Rejection(Code.DESTINATION_BARRED, f"destination {number} is barred")
        if cfg.credit is not None:
            if cfg.credit < len(numbers):
                raise Rejection(
                    Code.INSUFFICIENT_CREDIT, f"{len(numbers)} messages, {cfg.credit} credits left"
                )
            cfg.credit -= len(numbers)

    def _retry_after(self, code: int) -> dict[str, str] | None:
        return {"retry-after": str(self.config.retry_after)} if code in RETRYABLE_CODES else None

    def _latency(self) -> float:
        cfg = self.config
        if not cfg.latency_ms and not cfg.jitter_ms:
            return 0.0
        jitter = self._rng.uniform(-cfg.jitter_ms, cfg.jitter_ms) if cfg.jitter_ms else 0.0
        return max(0.0, cfg.latency_ms + jitter) / 1000

    def _dlr_due(self, start: float) -> float:
        jitter = self._rng.uniform(0, self.config.dlr_jitter) if self.config.dlr_jitter else 0.0
        return start + self.config.dlr_delay + jitter

    def _delivered(self) -> bool:
        ratio = self.config.delivered_ratio
        return ratio >= 1 or (ratio > 0 and self._rng.random() < ratio)

    def _owe(self, report: Report) -> None:
        heapq.heappush(self._owed, (report.due, next(self._owed_seq), report))

    def _new_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_seq):09d}"

    def _reject(
        self,
        response: SimResponse,
        delay: float,
        route: str,
        params: dict[str, str],
        rejection: Rejection,
    ) -> SimResponse:
        self._stats.refused(rejection.code, int(self.clock()))
        return self._finish(response, delay, route, params, rejection.code, rejection.detail)

    def _finish(
        self,
        response: SimResponse,
        delay: float,
        route: str,
        params: dict[str, str],
        code: int | None,
        detail: str | None = None,
    ) -> SimResponse:
        """Set the latency and remember the request (secrets masked) for debugging."""
        response.delay = delay
        self.last_requests.append(
            {
                "time": self.clock(),
                "route": route,
                "params": {k: "***" if k in _SECRET_PARAMS else v for k, v in params.items()},
                "status": response.status,
                "code": code,
                "detail": detail,
                "hang": response.hang,
            }
        )
        return response

    # --- admin ------------------------------------------------------------

    def _get_stats(self, req: SimRequest) -> SimResponse:
        return json_response(200, self.stats())

    def _reset_stats(self, req: SimRequest) -> SimResponse:
        self.reset_stats()
        return json_response(200, self.stats())

    def _get_config(self, req: SimRequest) -> SimResponse:
        return json_response(200, self.config.to_dict())

    def _patch_config(self, req: SimRequest) -> SimResponse:
        try:
            changes = json.loads(req.body or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object of settings")
            changed = self.config.patch(changes)
        except ValueError as exc:
            return json_response(400, {"error": str(exc)})
        if "seed" in changed:
            self._rng.seed(self.config.seed)
        return json_response(200, {"changed": changed, "config": self.config.to_dict()})

    def _get_requests(self, req: SimRequest) -> SimResponse:
        return json_response(200, {"requests": list(self.last_requests)})
