"""Campaign CSV ingestion into PostgreSQL: smsq against a naive baseline.

Generates a CSV on disk (``phone,name``; a realistic mix: mostly E.164,
some written with spaces or ``00``, some quoted names with commas, a few bad
numbers, duplicates, empty rows and Latin-1 rows), then ingests it through
the real path -- ``read_csv_rows(iter_file_chunks(f))`` into
``Producer.submit_campaign`` -- into a freshly migrated database. Enqueueing
is a no-op here (measured by ``bench/throughput.py``): the figure is
reading, validating and committing rows.

The baseline, in the same run: ``csv.DictReader`` + ``phonenumbers.parse`` +
``is_valid_number`` + one ORM ``Message`` and its event per row, a commit
every 1,000 rows, on the first ``--baseline-rows`` rows of the same file.

    .venv/bin/python bench/ingest.py                       # 1,000,000 rows, ~2 min
    .venv/bin/python bench/ingest.py --rows 200000 --repeats 1

Each run starts from an empty schema in the ``--postgres`` database (it is
dropped and migrated again), so the database must be a scratch one.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gc
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import phonenumbers
from sqlalchemy import func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.db import make_engine, make_sessionmaker
from models.ids import new_id
from models.migrate import upgrade
from models.sms_text import analyze
from models.status import EventSource, MessageKind
from models.tables import Campaign, Message, MessageEvent, utcnow
from producer.api import Producer
from producer.csv_rows import iter_file_chunks, read_csv_rows
from smsq.core.settings import Settings

TEMPLATE = "Hi {name}, 20% off everything today at Example Shop. Reply STOP to opt out"
FIRST_NAMES = ["Anna", "Jürgen", "Zoë", "Mohammed", "Li", "O'Brien", "Åsa", "Léa", "Ben", "Ivan"]


class NoEnqueue:
    """Publishes nothing: the committed ids are dropped."""

    def send_messages(self, ids: list[str], *, queue: str, eta: dt.datetime | None = None) -> bool:
        return True

    def start_campaign(self, campaign_id: str, *, eta: dt.datetime | None = None) -> bool:
        return True


def generate(path: Path, rows: int, seed: int = 4) -> dict[str, int]:
    """Write the CSV; returns how many rows of each kind it holds."""
    rnd = random.Random(seed)
    kinds = {"ok": 0, "bad": 0, "empty": 0, "latin1": 0, "duplicate": 0}
    with path.open("wb") as out:
        out.write(b"phone,name\r\n")
        lines: list[bytes] = []
        for i in range(rows):
            name = f"{rnd.choice(FIRST_NAMES)} {i}"
            roll = rnd.random()
            number = f"+49170{i:07d}" if i % 3 else f"+4479{i % 100_000_000:08d}"
            if roll < 0.002:
                kinds["empty"] += 1
                line = b""
            elif roll < 0.004:
                kinds["bad"] += 1
                line = f"+49 170 CALL{i},{name}".encode()
            elif roll < 0.006 and i > 10:
                kinds["duplicate"] += 1
                line = f"+49170{i - 3:07d},{name}".encode() if (i - 3) % 3 else b"+491700000001,x"
            elif roll < 0.007:
                kinds["latin1"] += 1
                line = f"{number},Jürgen {i}".encode("latin-1")
            elif roll < 0.05:
                kinds["ok"] += 1
                line = f'"{number[:3]} {number[3:6]} {number[6:]}","{name}, VIP"'.encode()
            elif roll < 0.07:
                kinds["ok"] += 1
                line = f"00{number[1:]},{name}".encode()
            else:
                kinds["ok"] += 1
                line = f"{number},{name}".encode()
            lines.append(line)
            if len(lines) >= 10_000:
                out.write(b"\r\n".join(lines) + b"\r\n")
                lines.clear()
        if lines:
            out.write(b"\r\n".join(lines) + b"\r\n")
    return kinds


def fresh_schema(url: str) -> None:
    engine = make_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(url)


def measure_smsq(url: str, path: Path) -> dict[str, Any]:
    fresh_schema(url)
    settings = Settings(database_url=url, max_parts=3)
    engine = make_engine(url)
    producer = Producer(settings, make_sessionmaker(engine), NoEnqueue())
    gc.collect()
    rss_before = _peak_rss_mb()
    started = time.perf_counter()
    with path.open("rb") as f:
        receipt = producer.submit_campaign(
            "bench", read_csv_rows(iter_file_chunks(f)), TEMPLATE, provider=None
        )
    seconds = time.perf_counter() - started
    with make_sessionmaker(engine)() as session:
        stored = session.scalar(select(func.count()).select_from(Message))
    engine.dispose()
    rows = receipt.accepted + receipt.rejected
    return {
        "rows": rows,
        "accepted": receipt.accepted,
        "rejected": receipt.rejected,
        "stored": stored,
        "seconds": seconds,
        "rate": rows / seconds,
        "peak_rss_mb_before": rss_before,
        "peak_rss_mb": _peak_rss_mb(),
    }


def measure_naive(url: str, path: Path, limit: int) -> dict[str, Any]:
    """One ORM object per row and per event, a commit every 1,000 rows."""
    fresh_schema(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    now = utcnow()
    started = time.perf_counter()
    accepted = rejected = 0
    seen: set[str] = set()
    with sessions() as session, path.open(encoding="utf-8", errors="replace", newline="") as f:
        campaign = Campaign(name="naive", text=TEMPLATE, provider="panel", status="running")
        session.add(campaign)
        session.commit()
        for i, row in enumerate(csv.DictReader(f)):
            if i >= limit:
                break
            try:
                parsed = phonenumbers.parse(row.get("phone") or "", None)
            except phonenumbers.NumberParseException:
                rejected += 1
                continue
            if not phonenumbers.is_valid_number(parsed):
                rejected += 1
                continue
            number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            if number in seen:
                rejected += 1
                continue
            seen.add(number)
            sms = analyze(TEMPLATE.format(name=row.get("name") or ""), max_parts=3)
            mid = new_id()
            session.add(
                Message(
                    id=mid,
                    to=number,
                    text=sms.text,
                    kind=MessageKind.CAMPAIGN,
                    campaign_id=campaign.id,
                    provider="panel",
                    status="queued",
                    encoding=sms.encoding.value,
                    segments=sms.segments,
                    created_at=now,
                    updated_at=now,
                )
            )
            session.add(
                MessageEvent(
                    message_id=mid, status="queued", source=EventSource.PRODUCER, created_at=now
                )
            )
            accepted += 1
            if accepted % 1000 == 0:
                session.commit()
        session.commit()
    seconds = time.perf_counter() - started
    engine.dispose()
    rows = accepted + rejected
    return {"rows": rows, "accepted": accepted, "seconds": seconds, "rate": rows / seconds}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="data rows in the CSV")
    ap.add_argument("--baseline-rows", type=int, default=50_000, help="rows the baseline reads")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each; medians reported")
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test_h2")
    ap.add_argument("--csv", type=Path, help="keep the generated CSV here (default: a temp file)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="smsq-ingest-") as tmp:
        path = args.csv or Path(tmp) / "recipients.csv"
        started = time.perf_counter()
        kinds = generate(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        print(
            f"generated {args.rows:,} rows ({size_mb:.0f} MB) in "
            f"{time.perf_counter() - started:.1f} s: {kinds}"
        )
        print("enqueueing is a no-op in this benchmark (see bench/throughput.py)")
        ours = []
        for _ in range(args.repeats):
            ours.append(measure_smsq(args.postgres, path))
            r = ours[-1]
            print(
                f"smsq   {r['rows']:>9,} rows {r['seconds']:>6.1f} s {r['rate']:>8,.0f} rows/s "
                f"accepted {r['accepted']:,} rejected {r['rejected']:,} "
                f"peak RSS {r['peak_rss_mb']:.0f} MB (before: {r['peak_rss_mb_before']:.0f} MB)"
            )
        naive = []
        for _ in range(args.repeats):
            naive.append(measure_naive(args.postgres, path, args.baseline_rows))
            r = naive[-1]
            print(f"naive  {r['rows']:>9,} rows {r['seconds']:>6.1f} s {r['rate']:>8,.0f} rows/s")

    ours_rate = statistics.median(r["rate"] for r in ours)
    naive_rate = statistics.median(r["rate"] for r in naive)
    print(
        f"median smsq {ours_rate:,.0f} rows/s, naive {naive_rate:,.0f} rows/s, "
        f"ratio {ours_rate / naive_rate:.1f}x"
    )
    if args.json:
        result = {
            "rows": args.rows,
            "kinds": kinds,
            "smsq": ours,
            "naive": naive,
            "smsq_rate_median": ours_rate,
            "naive_rate_median": naive_rate,
            "ratio": ours_rate / naive_rate,
        }
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
