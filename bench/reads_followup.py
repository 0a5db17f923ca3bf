"""Follow-up measurements for person search, incident lists and the agenda (issue 7).

Times, over real HTTP against a local API server, every read the bench times
(``bench.run.read_paths`` without the reports, ``deep_page_paths``, ``agenda_paths``) plus an
outreach worker's name search (one and two words), n sequential GETs each, p50/p95.

    .venv/bin/python -m bench.reads_followup                      # nfod_bench (1 M)
    .venv/bin/python -m bench.reads_followup --db small --only agenda
    .venv/bin/python -m bench.reads_followup --base http://127.0.0.1:8290   # a running server

An outreach user (``reads-followup-outreach``, of the agency holding the most follow-ups) is
created for the run and deleted afterwards; nothing else is written but the audit entries
every read makes.

``--dump DIR`` instead renders the first paths of each endpoint in-process with a fixed clock
(the data set's anchor) and writes the response bodies, so two versions of the code can be
compared byte for byte (``PYTHONPATH=<other checkout>`` for the other one, then ``cmp``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime

import httpx
import psycopg

from bench import run
from bench.common import BENCH_COORDINATOR, bench_url, libpq, with_database
from bench.servers import Server, token

OUTREACH = ("reads-followup-outreach", "reads-followup-outreach-pw")
SECOND_WORDS = ["sam", "john", "sarah", "amy"]


def dataset(name: str) -> dict:
    with open(os.path.join(run.RESULTS, f"dataset-{name}.json")) as fh:
        return json.load(fh)


def busiest_agency(url: str) -> str:
    rows = run.pg_exec(
        url,
        "SELECT assigned_agency_id, count(*) FROM incidents WHERE assigned_agency_id IS NOT NULL"
        " GROUP BY 1 ORDER BY 2 DESC LIMIT 1",
    )
    return rows[0][0]


def create_outreach_user(url: str) -> None:
    from models.base import new_id
    from services.security import hash_password

    agency = busiest_agency(url)
    now = datetime.now().astimezone()
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("DELETE FROM users WHERE username = %s", (OUTREACH[0],))
        conn.execute(
            """INSERT INTO users (id, username, password_hash, role, agency_id, display_name,
                   active, token_version, created_at, updated_at)
               VALUES (%s, %s, %s, 'outreach', %s, %s, true, 0, %s, %s)""",
            (new_id(), OUTREACH[0], hash_password(OUTREACH[1]), agency, OUTREACH[0], now, now),
        )


def delete_outreach_user(url: str) -> None:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("DELETE FROM login_failures WHERE username = %s", (OUTREACH[0],))
        conn.execute("DELETE FROM users WHERE username = %s", (OUTREACH[0],))


def paths_for(url: str, info: dict, client: httpx.Client | None) -> dict[str, list[str]]:
    paths = {k: v for k, v in run.read_paths(url, info).items() if not k.startswith("reports")}
    families = sorted({p.split("q=", 1)[1] for p in paths["person_search_name"]})
    paths["outreach_search_name"] = [f"/v1/persons?q={f}" for f in families]
    paths["outreach_search_name_2words"] = [
        f"/v1/persons?q={f}%20{g}" for f, g in zip(families, SECOND_WORDS * 50, strict=False)
    ]
    paths["agenda"] = run.agenda_paths(info)
    if client is not None:
        paths["incident_list_pages_2_to_20"] = run.deep_page_paths(client)
    return paths


def measure(base: str, url: str, info: dict, n: int, only: set[str]) -> dict:
    coord = token(base, *BENCH_COORDINATOR)
    out: dict = {}
    create_outreach_user(url)
    try:
        outreach = token(base, *OUTREACH)
        with (
            httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {coord}"}, timeout=60
            ) as c,
            httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {outreach}"}, timeout=60
            ) as o,
        ):
            paths = paths_for(
                url, info, c if (not only or "incident_list_pages_2_to_20" in only) else None
            )
            for key, ps in paths.items():
                if only and key not in only:
                    continue
                client = o if key.startswith("outreach") else c
                out[key] = run.timed_gets(client, ps, n)
    finally:
        delete_outreach_user(url)
    return out


def dump(url: str, info: dict, directory: str, per_key: int) -> None:
    """Response bodies of the first ``per_key`` paths of each endpoint, fixed clock."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from services.config import Settings

    anchor = datetime.fromisoformat(info["anchor"].replace("Z", "+00:00"))
    app = create_app(
        Settings(database_url=url, env="development", log_level="WARNING"), clock=lambda: anchor
    )
    os.makedirs(directory, exist_ok=True)
    create_outreach_user(url)
    try:
        with TestClient(app) as tc:
            tokens = {}
            for who, (user, pw) in (("coord", BENCH_COORDINATOR), ("outreach", OUTREACH)):
                r = tc.post("/v1/auth/token", data={"username": user, "password": pw})
                r.raise_for_status()
                tokens[who] = {"Authorization": f"Bearer {r.json()['access_token']}"}
            c = httpx.Client(transport=tc._transport, base_url="http://testserver")
            c.headers.update(tokens["coord"])
            for key, ps in paths_for(url, info, c).items():
                headers = tokens["outreach" if key.startswith("outreach") else "coord"]
                for i, p in enumerate(ps[:per_key]):
                    r = tc.get(p, headers=headers)
                    name = f"{key}-{i}.{r.status_code}.json"
                    with open(os.path.join(directory, name), "wb") as fh:
                        fh.write(r.content)
    finally:
        delete_outreach_user(url)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=("big", "small"), default="big")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--only", default="", help="comma-separated endpoint keys")
    p.add_argument("--port", type=int, default=8290)
    p.add_argument("--base", help="use a running server instead of starting one")
    p.add_argument("--dump", help="write response bodies here instead of timing")
    p.add_argument("--per-key", type=int, default=3)
    args = p.parse_args(argv)

    big = bench_url()
    name = "nfod_bench" if args.db == "big" else "nfod_bench_small"
    url = big if args.db == "big" else with_database(big, "nfod_bench_small")
    info = dataset(name)
    only = set(filter(None, args.only.split(",")))
    if args.dump:
        dump(url, info, args.dump, args.per_key)
        return 0
    server = None
    base = args.base
    if base is None:
        server = Server(
            f"api-reads-followup-{args.db}", "api", url, args.port, tempfile.gettempdir()
        )
        server.start()
        base = server.base
    try:
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        results = measure(base, url, info, args.n, only)
    finally:
        if server is not None:
            server.stop()
    print(
        json.dumps(
            {
                "db": name,
                "load_1m_at_start": round(load, 2),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    )
    print(f"| endpoint ({name}) | n | p50 ms | p95 ms | statuses | mean bytes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for key, r in results.items():
        print(
            f"| {key} | {r['n']} | {r['p50_ms']} | {r['p95_ms']} | {r['statuses']} |"
            f" {r['mean_bytes']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
