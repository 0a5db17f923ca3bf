"""Load client, run as its own process (async httpx): ingest at full speed or at a fixed rate.

    python -m bench.load --base http://127.0.0.1:8100 --mode max --seconds 20 --concurrency 16
    python -m bench.load --base ... --mode rate --rate 100 --seconds 20
    python -m bench.load --base ... --mode crash --rate 200 --seconds 30 --journal j.jsonl

Bodies are realistic incident notifications: ~30 % name a person already in the database
(``--people`` JSON file of existing people, so person matching finds them), the rest new
people, some unidentified. Prints one JSON line with the outcome.

``crash`` mode sends every request with a client-side ``Idempotency-Key`` and retries each
one (same key, same body) until it is answered with a 2xx or a 4xx; connection errors, 5xx
and 503 are retried with backoff. Every answer is appended to ``--journal`` (key, status,
id), which the resilience driver checks against the database afterwards.
"""

# ruff: noqa: E501, SIM115  (the journal stays open for the whole run)

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from bench.common import BENCH_API_KEY, summary_ms
from bench.generate import FAMILY, FEMALE, MALE, POSTCODE_LETTERS, chi_check_digit_mod11

DISTRICTS = ["DD1", "DD2", "DD3", "DD4", "DD5", "G1", "G31", "EH6", "EH11", "AB24", "KY1", "PA1"]


class BodyMaker:
    def __init__(self, people: list[dict], seed: int, run_tag: str):
        self.rng = random.Random(seed)
        self.people = people
        self.tag = run_tag
        self.n = 0

    def _new_person(self) -> dict:
        rng = self.rng
        sex = "male" if rng.random() < 0.7 else "female"
        dob = datetime(1960, 1, 1) + timedelta(days=rng.randrange(47 * 365))
        person = {
            "given_name": rng.choice(MALE if sex == "male" else FEMALE),
            "family_name": rng.choice(FAMILY),
            "date_of_birth": dob.date().isoformat(),
            "sex": sex,
        }
        if rng.random() < 0.6:
            while True:
                nine = f"{dob:%d%m%y}{rng.randrange(100):02d}{rng.randrange(0, 10, 2) + (sex == 'male')}"
                check = chi_check_digit_mod11(nine)
                if check is not None:
                    person["chi"] = nine + str(check)
                    break
        return person

    def make(self) -> dict:
        rng = self.rng
        self.n += 1
        now = datetime.now(UTC)
        occurred = now - timedelta(minutes=rng.randrange(20, 2000))
        district = rng.choice(DISTRICTS)
        body: dict = {
            "source_ref": f"LOAD-{self.tag}-{self.n:07d}",
            "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
            "reported_at": (now - timedelta(minutes=rng.randrange(0, 15)))
            .isoformat()
            .replace("+00:00", "Z"),
            "location": {
                "description": "stairwell",
                "postcode": f"{district} {rng.randrange(1, 10)}{rng.choice(POSTCODE_LETTERS)}{rng.choice(POSTCODE_LETTERS)}",
            },
            "substances": rng.sample(
                ["heroin", "street benzodiazepine", "cocaine", "methadone", "alcohol"], 2
            ),
            "naloxone_administered": True,
            "naloxone_administered_by": "ambulance",
            "hospital": "declined",
        }
        r = rng.random()
        if r < 0.3 and self.people:
            body["person"] = dict(rng.choice(self.people))
        elif r < 0.95:
            body["person"] = self._new_person()
        return body


def _key(wanted: bool) -> str | None:
    """A fresh client-side Idempotency-Key, as a partner that retries safely sends."""
    return str(uuid.uuid4()) if wanted else None


def _headers(key: str | None = None) -> dict[str, str]:
    h = {"Authorization": f"Bearer {BENCH_API_KEY}", "Content-Type": "application/json"}
    if key:
        h["Idempotency-Key"] = key
    return h


async def run_max(
    base: str, seconds: float, concurrency: int, maker: BodyMaker, keys: bool = False
) -> dict:
    lat: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                body = maker.make()
                t = time.perf_counter()
                try:
                    resp = await client.post(
                        "/v1/incidents", json=body, headers=_headers(_key(keys))
                    )
                except httpx.HTTPError:
                    errors += 1
                    continue
                lat.append(time.perf_counter() - t)
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    return {
        "mode": "max",
        "idempotency_keys": keys,
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "ok": ok,
        "throughput_rps": round(ok / elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "connection_errors": errors,
        "latency": summary_ms(lat),
    }


async def run_rate(
    base: str, seconds: float, rate: float, maker: BodyMaker, keys: bool = False
) -> dict:
    """Open loop: request i is due at t0 + i/rate; latency counts from its due time."""
    lat: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    n = int(seconds * rate)
    async with httpx.AsyncClient(
        base_url=base, timeout=30, limits=httpx.Limits(max_connections=200)
    ) as client:
        t0 = time.perf_counter() + 0.2

        async def one(i: int) -> None:
            nonlocal errors
            due = t0 + i / rate
            body = maker.make()
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                resp = await client.post("/v1/incidents", json=body, headers=_headers(_key(keys)))
            except httpx.HTTPError:
                errors += 1
                return
            lat.append(time.perf_counter() - due)
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1

        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - t0
    return {
        "mode": "rate",
        "idempotency_keys": keys,
        "target_rps": rate,
        "sent": n,
        "seconds": round(elapsed, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "connection_errors": errors,
        "latency": summary_ms(lat),
    }


async def run_crash(
    base: str,
    seconds: float,
    rate: float,
    maker: BodyMaker,
    journal: str,
    give_up: float,
    timeout_s: float = 30.0,
) -> dict:
    """Idempotent ingest at a fixed rate; every request retried until answered.

    At most 64 requests are in flight (more only queue inside the client, never time out
    waiting there), so a slow or restarting server is not buried under a retry storm of
    abandoned requests. A request still unanswered ``give_up`` seconds after the load phase
    ends is counted as given up. An attempt unanswered after ``timeout_s`` is abandoned
    (journalled as ``ReadTimeout``) and retried.
    """
    statuses: dict[str, int] = {}
    retries = 0
    unanswered = 0
    n = int(seconds * rate)
    jf = open(journal, "a", buffering=1)
    timeout = httpx.Timeout(timeout_s, pool=None)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as client:
        t0 = time.perf_counter() + 0.2
        deadline = t0 + seconds + give_up
        gate = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            nonlocal retries, unanswered
            due = t0 + i / rate
            body = maker.make()
            key = str(uuid.uuid4())
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            backoff = 0.2
            attempt = 0
            while True:
                attempt += 1
                status: int | str
                async with gate:  # never more than 64 requests inside httpx's pool
                    sent_at = time.perf_counter()
                    try:
                        resp = await client.post("/v1/incidents", json=body, headers=_headers(key))
                        status = resp.status_code
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                        resp = None
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                final = isinstance(status, int) and (
                    200 <= status < 300 or status in (400, 401, 403, 404, 422)
                )
                record = {
                    "key": key,
                    "ref": body["source_ref"],
                    "attempt": attempt,
                    "status": status,
                    "ms": round((time.perf_counter() - sent_at) * 1000, 1),
                }
                if resp is not None and 200 <= resp.status_code < 300:
                    record["id"] = resp.json().get("id")
                if resp is not None and resp.status_code >= 500:
                    ctype = resp.headers.get("content-type", "")
                    record["problem"] = ctype.startswith("application/problem+json")
                    if record["problem"]:
                        record["detail"] = resp.json().get("detail")
                jf.write(json.dumps(record) + "\n")
                if final:
                    return
                if time.perf_counter() > deadline:
                    unanswered += 1
                    return
                retries += 1
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 1.5)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - started
    jf.close()
    return {
        "mode": "crash",
        "target_rps": rate,
        "sent": n,
        "seconds_until_all_answered": round(elapsed, 1),
        "attempt_statuses": statuses,
        "retries": retries,
        "gave_up": unanswered,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--mode", choices=["max", "rate", "crash"], default="max")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--rate", type=float, default=100)
    p.add_argument("--people", help="JSON file: a list of existing person blocks")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tag", default=uuid.uuid4().hex[:8])
    p.add_argument("--journal", default="/tmp/nfod-crash-journal.jsonl")
    p.add_argument("--give-up", type=float, default=120)
    p.add_argument("--timeout", type=float, default=30, help="seconds per attempt (crash mode)")
    p.add_argument(
        "--idempotency-keys",
        action="store_true",
        help="max/rate modes: send a fresh Idempotency-Key with every request",
    )
    args = p.parse_args(argv)
    people = json.load(open(args.people)) if args.people else []
    maker = BodyMaker(people, args.seed, args.tag)
    if args.mode == "max":
        out = asyncio.run(
            run_max(args.base, args.seconds, args.concurrency, maker, args.idempotency_keys)
        )
    elif args.mode == "rate":
        out = asyncio.run(
            run_rate(args.base, args.seconds, args.rate, maker, args.idempotency_keys)
        )
    else:
        out = asyncio.run(
            run_crash(
                args.base,
                args.seconds,
                args.rate,
                maker,
                args.journal,
                args.give_up,
                args.timeout,
            )
        )
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
