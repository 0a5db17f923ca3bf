"""Bulk data generator: a realistic national data set loaded straight into PostgreSQL.

    python -m bench.generate --incidents 1000000 [--url postgresql+psycopg://...] [--seed 7]

The database (NFOD_BENCH_DATABASE_URL, default ``nfod_bench`` on 127.0.0.1:5432) is dropped,
re-created and migrated with Alembic (``services.migrations.upgrade``), then filled with
psycopg 3 ``COPY``. Secondary indexes and foreign keys of the bulk tables are dropped for the
load and re-created afterwards from the exact definitions PostgreSQL reported before the
drop (``pg_get_indexdef``/``pg_get_constraintdef``), so the schema afterwards is identical
to the migrated one (``alembic check`` style drift is impossible).

Shape of the data (all relative to ``--anchor``, default: now):

* people: ``incidents * 0.3``; ~80 % with a CHI number valid under modulus 11 (DOMAIN.md),
  names, dates of birth (18-65), sex (70 % male), postcode, phone;
* incidents: 70 % of people have exactly one, the rest share the remainder on a skewed
  (Zipf-like) curve, so repeats are the rule for ~30 % of people; ~5 % unidentified.
  A steady "recent" rate (``--recent-per-day``, default 100/day over the last 14 days) is
  identical for every size so the huddle agenda has the same size at 10 k and at 1 M: only
  the history behind it grows. History (older than 14 days) is spread over the years before
  and is resolved (contacted 72 %, closed 28 %) and discussed at a held huddle;
* postcode districts: DD1..DD5 take ~35 %, the rest a Zipf spread over ~400 Scottish districts;
* substances (1-3 rows per incident), contact attempts (~4 per incident at full scale) with
  ContactCode actions/referrals on successful ones, safety plans (1-2 versions with 2-4
  actions) for people with repeats, huddles for every weekday of history;
* ``--overdue-batch N`` adds N incidents reported late (a partner's bulk back-fill, reported
  one hour before the anchor) whose 72-hour window ended in the six hours before the anchor:
  the sweep benchmark's "newly overdue" rows. They are not on the anchor date's agenda
  (reported after its cut-off).

It also seeds a partner API client and a coordinator (see bench/common.py for the fixed
bench credentials) and writes ``bench/results/dataset-<db>.json`` describing the data.
"""

# ruff: noqa: E501  (long literal tables of names and places)

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import multiprocessing
import os
import random
import threading
import time
import traceback
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from bench.common import (
    BENCH_ANALYST,
    BENCH_API_KEY,
    BENCH_COORDINATOR,
    ROOT,
    bench_url,
    database_name,
    libpq,
    recreate_database,
)
from services import reports

TZ = ZoneInfo("Europe/London")
RECENT_DAYS = 14

AGENCIES = [
    ("Scottish Ambulance Service", "statutory"),
    ("Police Scotland", "statutory"),
    ("NHS Tayside Emergency Department", "statutory"),
    ("DDARS", "statutory"),
    ("Hillcrest Futures", "third_sector"),
    ("We Are With You", "third_sector"),
    ("Positive Steps", "third_sector"),
    ("Tayside Council on Alcohol", "third_sector"),
    ("Dundee Women's Aid", "third_sector"),
    ("Women's Rape and Sexual Abuse Centre", "third_sector"),
    ("Transform Housing First", "third_sector"),
    ("Children and Families Social Work", "statutory"),
    ("Community Justice Social Work", "statutory"),
    ("DIAS Advocacy", "third_sector"),
    ("SafeZone Bus", "third_sector"),
    ("Community Pharmacies", "other"),
]
# Index into AGENCIES -> weight as a source of notifications.
SOURCE_WEIGHTS = {0: 45, 1: 20, 2: 20, 14: 6, 15: 5, 4: 4}
FOLLOW_UP_AGENCIES = [3, 4, 5, 6, 7, 8, 10, 14]

MALE = [
    "James",
    "John",
    "David",
    "Robert",
    "Michael",
    "William",
    "Paul",
    "Mark",
    "Scott",
    "Steven",
    "Craig",
    "Gary",
    "Andrew",
    "Kevin",
    "Stuart",
    "Ross",
    "Jamie",
    "Ryan",
    "Sean",
    "Darren",
    "Callum",
    "Liam",
    "Connor",
    "Barry",
    "Graeme",
    "Derek",
    "Alan",
    "Ian",
    "Sam",
    "Euan",
]
FEMALE = [
    "Sarah",
    "Laura",
    "Lisa",
    "Claire",
    "Nicola",
    "Karen",
    "Gemma",
    "Emma",
    "Louise",
    "Kelly",
    "Amy",
    "Lynsey",
    "Donna",
    "Michelle",
    "Stacey",
    "Jennifer",
    "Kirsty",
    "Leanne",
    "Amanda",
    "Rachel",
    "Zoe",
    "Chloe",
    "Hannah",
    "Mhairi",
    "Eilidh",
    "Siobhan",
    "Ann",
    "Fiona",
    "Sam",
    "Jo",
]
FAMILY = [
    "Smith",
    "Brown",
    "Wilson",
    "Robertson",
    "Thomson",
    "Campbell",
    "Stewart",
    "Anderson",
    "Scott",
    "Murray",
    "MacDonald",
    "Reid",
    "Taylor",
    "Clark",
    "Ross",
    "Young",
    "Mitchell",
    "Watson",
    "Paterson",
    "Morrison",
    "Fraser",
    "Henderson",
    "Walker",
    "Hamilton",
    "Gray",
    "Kerr",
    "Johnston",
    "Duncan",
    "Ferguson",
    "Hunter",
    "Kelly",
    "Bell",
    "Grant",
    "Mackenzie",
    "Allan",
    "Black",
    "Wallace",
    "McLean",
    "Miller",
    "Russell",
    "Simpson",
    "Cameron",
    "Ó Briain",
    "McKay",
    "Sinclair",
    "Munro",
    "Gibson",
    "Docherty",
    "Boyle",
    "Lindsay",
    "Wood",
    "Marshall",
    "Gordon",
    "Kennedy",
    "Milne",
    "Craig",
    "Crawford",
    "Burns",
    "Rennie",
    "Davidson",
    "Lowe",
    "Kidd",
    "Wright",
    "Souter",
    "Cruickshank",
    "Guthrie",
    "Ogilvie",
]
SUBSTANCES = [
    ("heroin", 30),
    ("street benzodiazepine", 25),
    ("cocaine", 15),
    ("methadone", 8),
    ("alcohol", 10),
    ("pregabalin", 5),
    ("gabapentin", 4),
    ("crack cocaine", 4),
    ("nitazene", 2),
    ("unknown", 8),
    ("xylazine", 1),
    ("buprenorphine", 2),
]
METHODS = [
    "phone",
    "text",
    "home_visit",
    "street",
    "hospital",
    "at_service",
    "letter",
    "via_partner",
]
FAIL_OUTCOMES = ["no_answer", "not_found", "message_left", "no_answer", "not_found"]
ACTIONS = [
    "naloxone_supplied",
    "harm_reduction_advice",
    "injecting_equipment",
    "wound_care",
    "bbv_test",
]
REFERRALS = [
    "drug_treatment",
    "same_day_prescribing",
    "housing",
    "mental_health",
    "womens_services",
    "children_and_families",
    "adult_protection",
]
CLOSED_REASONS = [
    "declined",
    "already_engaged",
    "in_custody",
    "in_hospital",
    "moved_away",
    "deceased",
    "unable_to_locate",
    "unable_to_locate",
]
RISK_FACTORS = [
    "repeat_overdose",
    "recent_prison_release",
    "no_fixed_address",
    "children_in_household",
    "domestic_abuse",
    "mental_health_crisis",
    "recently_left_treatment",
    "polysubstance_use",
    "injecting",
    "lives_alone",
]
PLAN_ACTIONS = [
    "Weekly outreach visit",
    "Same-day prescribing appointment",
    "Naloxone training",
    "Housing First referral",
    "Check-in after prison release",
    "BBV test booked",
    "Women's service key worker contact",
    "Mental health assessment",
]
POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
LOCATIONS = [
    "stairwell",
    "flat",
    "street",
    "park",
    "hostel",
    "public toilet",
    "car park",
    "bus shelter",
    "close",
    "pub",
]


def scottish_districts() -> list[str]:
    areas = {
        "G": 84,
        "EH": 55,
        "AB": 56,
        "KY": 16,
        "PA": 49,
        "FK": 21,
        "ML": 12,
        "IV": 63,
        "PH": 50,
        "KA": 30,
        "DG": 16,
        "TD": 15,
        "DD": 11,
    }
    out = []
    for area, top in areas.items():
        start = 10 if area == "AB" else 1
        for n in range(start, top + 1):
            district = f"{area}{n}"
            if district not in ("DD1", "DD2", "DD3", "DD4", "DD5"):
                out.append(district)
    return out


def chi_check_digit_mod11(nine: str) -> int | None:
    total = sum(int(d) * w for d, w in zip(nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


class Ids:
    """Fast random UUID-shaped ids (uuid4 layout), unique by construction of 122 random bits."""

    def __init__(self, rng: random.Random):
        self.bits = rng.getrandbits

    def __call__(self) -> str:
        h = f"{self.bits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def ts(dt: datetime) -> str:
    return dt.isoformat()


# Binary COPY sends each value in the column type's own wire format, which psycopg's C
# dumpers produce; the server need not parse text either. A json column's wire format is
# its text, so the rows carry it as text; character types are all text on the wire.
_WIRE_TYPE = {"json": "text", "character varying": "text"}


class Copier:
    """Buffered binary-format COPY into one table (psycopg formats and buffers the rows)."""

    def __init__(self, url: str, table: str, columns: list[str]):
        # One connection per table: a connection carries one COPY at a time, and PostgreSQL
        # then parses the tables in parallel server processes.
        self.conn = psycopg.connect(url)
        self.conn.execute("SET synchronous_commit = off")
        self.table = table
        self.columns = columns
        declared = dict(
            self.conn.execute(
                "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute"
                " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (table,),
            ).fetchall()
        )
        self.cursor = self.conn.cursor()
        self.copy_cm = self.cursor.copy(
            f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
        )
        self.copy = self.copy_cm.__enter__()
        self.copy.set_types([_WIRE_TYPE.get(declared[c], declared[c]) for c in columns])
        self.rows = 0

    def row(self, *values) -> None:
        self.copy.write_row(values)
        self.rows += 1

    def close(self) -> int:
        self.copy_cm.__exit__(None, None, None)
        self.conn.commit()
        self.conn.close()
        return self.rows


BULK_TABLES = [
    "persons",
    "huddles",
    "incidents",
    "incident_substances",
    "contact_attempts",
    "contact_codes",
    "safety_plan_versions",
    "safety_plan_actions",
]


def drop_secondary(conn: psycopg.Connection) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Drop every index, key and foreign key of the bulk tables (primary keys too: building a
    B-tree once over sorted keys is far cheaper than inserting 5 M random ids into one), and
    the foreign keys of other tables that point at them; return how to restore them.

    Returns the index definitions to build (the keys' unique indexes among them) and the
    constraints to add afterwards: a key is then attached to its index (``USING INDEX``),
    a foreign key validated."""
    tables = list(BULK_TABLES)
    constraints = conn.execute(
        """SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.contype,
                  CASE WHEN c.contype IN ('p', 'u') THEN pg_get_indexdef(c.conindid) END
             FROM pg_constraint c
            WHERE (c.conrelid::regclass::text = ANY(%s) AND c.contype IN ('f', 'u', 'p'))
               OR (c.contype = 'f' AND c.confrelid::regclass::text = ANY(%s))""",
        (tables, tables),
    ).fetchall()
    indexes = conn.execute(
        """SELECT pg_get_indexdef(i.indexrelid)
             FROM pg_index i
            WHERE i.indrelid::regclass::text = ANY(%s)
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""",
        (tables,),
    ).fetchall()
    # The tables' own triggers copy a parent's occurred_at into each child row by a lookup
    # per row - by primary key, which is gone while loading, and of a parent another COPY
    # has not committed yet, so it always fell back to the value the generator sends anyway.
    # Off while loading, on again in restore_secondary.
    for table in tables:
        conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    # Foreign keys first (they depend on unique and primary keys), then the keys.
    order = {"f": 0, "u": 1, "p": 2}
    for table, name, _def, _contype, _index in sorted(constraints, key=lambda r: order[r[3]]):
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    index_defs = [row[0] for row in indexes]
    for d in index_defs:
        name = d.split(" INDEX ", 1)[1].split(" ON ", 1)[0]
        conn.execute(f"DROP INDEX {name}")
    restore = []
    for table, name, definition, contype, index_def in constraints:
        kind = {"p": "PRIMARY KEY", "u": "UNIQUE"}.get(contype)
        if kind and definition.startswith(f"{kind} (") and definition.endswith(")"):
            index_defs.append(index_def)  # built with the others, then attached
            definition = f'{kind} USING INDEX "{name}"'
        restore.append((table, name, definition, order[contype]))
    restore.sort(key=lambda r: -r[3])  # primary keys, then unique, then foreign keys
    return index_defs, [(t, n, d) for t, n, d, _ in restore]


def _build_indexes(url: str, index_defs: list[str], workers: int) -> None:
    """CREATE INDEX statements on ``workers`` connections at once (each takes a SHARE lock on
    its table, which another index build does not conflict with), largest tables first."""
    pending = list(index_defs)
    order = {t: i for i, t in enumerate(["contact_attempts", "incidents", "contact_codes"])}
    pending.sort(key=lambda d: order.get(d.split(" ON ", 1)[1].split()[0].split(".")[-1], 9))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("SET maintenance_work_mem = '512MB'")
            c.execute("SET max_parallel_maintenance_workers = 2")
            while not errors:
                with lock:
                    if not pending:
                        return
                    definition = pending.pop(0)
                try:
                    c.execute(definition)
                except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
                    errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(max(1, workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def restore_secondary(
    conn: psycopg.Connection, index_defs: list[str], constraints, *, url: str, workers: int = 2
) -> tuple[float, float]:
    """Re-create the indexes (``workers`` at a time), then the keys and constraints; returns
    the seconds each part took."""
    for table in BULK_TABLES:
        conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    started = time.perf_counter()
    _build_indexes(url, index_defs, workers)
    built = time.perf_counter()
    for table, name, definition in constraints:
        if definition.startswith("FOREIGN"):
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition} NOT VALID')
            conn.execute(f'ALTER TABLE {table} VALIDATE CONSTRAINT "{name}"')
        else:
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    return built - started, time.perf_counter() - built


def weekday_huddles(start: date, end: date) -> list[date]:
    out = []
    d = start
    while d <= end:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out


def local_cutoff(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, 9, 0, tzinfo=TZ).astimezone(UTC)


def generate(
    url: str,
    *,
    incidents: int,
    seed: int = 7,
    anchor: datetime | None = None,
    recent_per_day: int = 30,
    overdue_batch: int = 0,
    contacts_per_incident: float = 4.0,
    years: float = 10.0,
    quiet: bool = False,
) -> dict:
    t0 = time.perf_counter()
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    rng = random.Random(seed)
    new_id = Ids(rng)
    anchor = (anchor or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    recent_start = anchor - timedelta(days=RECENT_DAYS)

    recreate_database(url)
    from services import migrations

    migrations.upgrade(url)
    say(f"migrated {database_name(url)} in {time.perf_counter() - t0:.1f}s")

    from services.matching import name_key, normalise_name
    from services.security import hash_api_key, hash_password

    family_keys = {f: normalise_name(f) for f in FAMILY}

    n_recent = min(incidents, recent_per_day * RECENT_DAYS)
    n_history = incidents - n_recent
    n_people = max(10, int(incidents * 0.3))
    history_days = max(30, int(365 * years))
    history_start = recent_start - timedelta(days=history_days)

    stats: dict = {}
    conn = psycopg.connect(libpq(url), autocommit=False)
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET maintenance_work_mem = '512MB'")
    conn.execute("SET max_parallel_maintenance_workers = 2")

    # --- reference data: agencies, users, a partner client -------------------------------
    agency_ids = [new_id() for _ in AGENCIES]
    with conn.cursor() as cur:
        for aid, (name, kind) in zip(agency_ids, AGENCIES, strict=True):
            cur.execute(
                "INSERT INTO agencies (id, name, kind, created_at) VALUES (%s, %s, %s, %s)",
                (aid, name, kind, history_start),
            )
        coordinator_id = new_id()
        users = [
            (coordinator_id, BENCH_COORDINATOR, "coordinator", None),
            (new_id(), BENCH_ANALYST, "analyst", None),
        ]
        for uid, (username, password), role, agency in users:
            cur.execute(
                """INSERT INTO users (id, username, password_hash, role, agency_id, display_name,
                       active, token_version, created_at, updated_at)
                   VALUES (%s, %s, %s, %s, %s, %s, true, 0, %s, %s)""",
                (
                    uid,
                    username,
                    hash_password(password),
                    role,
                    agency,
                    username,
                    history_start,
                    history_start,
                ),
            )
        client_id = new_id()
        cur.execute(
            """INSERT INTO api_clients (id, name, agency_id, key_hash, key_prefix, created_at)
               VALUES (%s, %s, %s, %s, %s, %s)""",
            (
                client_id,
                "bench partner",
                agency_ids[0],
                hash_api_key(BENCH_API_KEY),
                BENCH_API_KEY[:12],
                history_start,
            ),
        )

    index_defs, constraints = drop_secondary(conn)
    conn.commit()
    pq = libpq(url)

    # --- people ---------------------------------------------------------------------------
    districts_dd = ["DD1", "DD2", "DD3", "DD4", "DD5"]
    dd_weights = [30, 18, 26, 16, 10]
    national = scottish_districts()
    rng.shuffle(national)
    nat_weights = [1 / (i + 1) ** 0.6 for i in range(len(national))]
    all_districts = districts_dd + national
    dd_total = 0.35
    nat_sum = sum(nat_weights)
    weights = [w / sum(dd_weights) * dd_total for w in dd_weights] + [
        w / nat_sum * (1 - dd_total) for w in nat_weights
    ]
    cum_district = list(itertools.accumulate(weights))

    def district() -> str:
        return all_districts[bisect.bisect_left(cum_district, rng.random() * cum_district[-1])]

    def postcode(d: str) -> str:
        return f"{d} {rng.randrange(1, 10)}{rng.choice(POSTCODE_LETTERS)}{rng.choice(POSTCODE_LETTERS)}"

    people = Copier(
        pq,
        "persons",
        [
            "id",
            "chi",
            "given_name",
            "family_name",
            "family_key",
            "name_key",
            "date_of_birth",
            "sex",
            "postcode",
            "phone",
            "merged_into_id",
            "created_at",
            "updated_at",
        ],
    )
    chi_serial: dict[date, int] = {}
    person_ids: list[str] = []
    person_home: list[str] = []
    person_info: list[tuple] = []
    dob_lo = anchor.date().toordinal() - 65 * 365
    dob_span = 47 * 365
    for _ in range(n_people):
        pid = new_id()
        sex = "male" if rng.random() < 0.7 else ("female" if rng.random() < 0.97 else "unknown")
        given = rng.choice(MALE if sex == "male" else FEMALE)
        family = rng.choice(FAMILY)
        dob = date.fromordinal(dob_lo + rng.randrange(dob_span))
        chi = None
        if rng.random() < 0.8:
            s = chi_serial.get(dob, rng.randrange(0, 50))
            while True:
                s += 1
                male_digit = sex == "male"
                ninth = (s % 5) * 2 + (1 if male_digit else 0)
                nine = f"{dob:%d%m%y}{(s // 5) % 100:02d}{ninth}"
                check = chi_check_digit_mod11(nine)
                if check is not None:
                    break
            chi_serial[dob] = s
            chi = nine + str(check)
            if s // 5 >= 100:  # serials exhausted for this date of birth: leave unidentified by CHI
                chi = None
        d = district()
        pc = postcode(d)
        phone = f"07700{rng.randrange(900000, 999999)}" if rng.random() < 0.6 else None
        people.row(
            pid,
            chi,
            given,
            family,
            family_keys[family],
            name_key(family, given),
            dob,
            sex,
            pc,
            phone,
            None,
            history_start,
            history_start,
        )
        person_ids.append(pid)
        person_home.append(d)
        person_info.append((chi, given, family, dob, sex, pc))
    stats["persons"] = people.close()
    say(f"persons {stats['persons']:,} at {time.perf_counter() - t0:.1f}s")

    # Incidents per person: 70 % one, the rest a heavy tail.
    n_ident = int(incidents * 0.95)
    n_single = int(n_people * 0.7)
    n_repeat_people = n_people - n_single
    extra = max(0, n_ident - n_people)
    tail = [1 / (i + 1) ** 0.6 for i in range(n_repeat_people)]
    tsum = sum(tail)
    per_person = [1] * n_single + [2 + int(extra * w / tsum) for w in tail]
    # Fix rounding so the identified total is exact (never drop below one per person).
    diff = n_ident - sum(per_person)
    i = n_single
    while diff != 0 and n_repeat_people:
        if diff > 0:
            per_person[i] += 1
            diff -= 1
        elif per_person[i] > 2:
            per_person[i] -= 1
            diff += 1
        i = n_single + ((i - n_single + 1) % n_repeat_people)
    owners: list[int | None] = []
    for idx, count in enumerate(per_person):
        owners.extend([idx] * count)
    owners.extend([None] * (incidents - len(owners)))
    owners = owners[:incidents]
    rng.shuffle(owners)

    # --- huddles --------------------------------------------------------------------------
    huddle_days = weekday_huddles(
        history_start.date(), anchor.astimezone(TZ).date() - timedelta(days=1)
    )
    huddle_cutoffs = [local_cutoff(d) for d in huddle_days]
    huddle_ids = [new_id() for _ in huddle_days]
    hud = Copier(
        pq,
        "huddles",
        [
            "id",
            "date",
            "held_at",
            "held_by_id",
            "chair_name",
            "cutoff_at",
            "previous_huddle_date",
            "next_huddle_date",
            "created_at",
        ],
    )
    for k, (hid, d, cut) in enumerate(zip(huddle_ids, huddle_days, huddle_cutoffs, strict=True)):
        held = cut + timedelta(minutes=15)
        prev = huddle_days[k - 1] if k else None
        nxt = huddle_days[k + 1] if k + 1 < len(huddle_days) else None
        hud.row(hid, d, held, coordinator_id, "Bench Chair", cut, prev, nxt, held)
    stats["huddles"] = hud.close()

    # --- incidents, substances, contacts (split over worker processes) -------------------
    inc = subs = con = codes = None

    src_idx = list(SOURCE_WEIGHTS)
    src_cum = list(itertools.accumulate(SOURCE_WEIGHTS.values()))
    sub_names = [s for s, _ in SUBSTANCES]
    sub_cum = list(itertools.accumulate(w for _, w in SUBSTANCES))
    window = timedelta(hours=72)
    hist_seconds = int((recent_start - history_start).total_seconds())
    recent_seconds = int((anchor - recent_start).total_seconds())
    agenda_day = anchor.astimezone(TZ).date()
    agenda_cutoff = local_cutoff(agenda_day)
    person_last: dict[int, datetime] = {}
    counts = {"contacted": 0, "closed": 0, "awaiting_contact": 0, "overdue_batch": 0}
    ref_counter = itertools.count(1)
    contacts_target = contacts_per_incident
    # Successful attempts cost ~1 + failed ones; tune failures so the mean is contacts_target.
    mean_fail = max(0.0, contacts_target - 1.0)

    def emit(
        owner: int | None, occurred: datetime, reported: datetime, *, status: str, discussed: bool
    ) -> None:
        iid = new_id()
        k = bisect.bisect_left(src_cum, rng.random() * src_cum[-1])
        source = agency_ids[src_idx[k]]
        due = occurred + window
        if owner is not None:
            pid = person_ids[owner]
            chi, given, family, dob, sex, pc = person_info[owner]
            d = person_home[owner] if rng.random() < 0.8 else district()
            submitted = {
                "given_name": given,
                "family_name": family,
                "date_of_birth": dob.isoformat(),
                "sex": sex,
            }
            if chi and rng.random() < 0.7:
                submitted["chi"] = chi
            submitted_json = json.dumps(submitted, separators=(",", ":"))
            # The report's copies (migration 0008; its trigger is off while loading).
            person_sex, person_age = sex, reports.age_at(occurred, dob)
            last = person_last.get(owner)
            if last is None or occurred > last:
                person_last[owner] = occurred
        else:
            pid = None
            d = district()
            submitted_json = None
            person_sex = person_age = None
        pc = postcode(d)
        nalox = rng.random() < 0.6
        ref = f"BENCH-{next(ref_counter):08d}"
        hospital = rng.choice(("conveyed", "declined", "not_required", "unknown", "declined"))
        first_contact = within = assigned = closed_reason = closed_at = None
        n_fail = int(rng.expovariate(1 / (mean_fail + 0.5))) if mean_fail else 0
        attempts: list[tuple[datetime, str]] = []
        if status == "contacted":
            delay = timedelta(hours=rng.expovariate(1 / 40))
            first_contact = min(reported + delay, anchor)
            within = first_contact <= due
            gap = (first_contact - reported) / (n_fail + 1)
            for j in range(n_fail):
                attempts.append(
                    (reported + gap * (j + 1) * rng.random(), rng.choice(FAIL_OUTCOMES))
                )
            attempts.append((first_contact, "contacted"))
            assigned = agency_ids[rng.choice(FOLLOW_UP_AGENCIES)]
        elif status == "closed":
            closed_reason = rng.choice(CLOSED_REASONS)
            closed_at = reported + timedelta(days=rng.uniform(1, 20))
            for _ in range(n_fail + 1):
                attempts.append(
                    (reported + (closed_at - reported) * rng.random(), rng.choice(FAIL_OUTCOMES))
                )
            assigned = agency_ids[rng.choice(FOLLOW_UP_AGENCIES)]
        else:
            for _ in range(min(n_fail, 3)):
                t = reported + (anchor - reported) * rng.random()
                attempts.append((t, rng.choice(FAIL_OUTCOMES)))
            if discussed:
                assigned = agency_ids[rng.choice(FOLLOW_UP_AGENCIES)]
        hud_id = discussed_at = None
        if discussed:
            h = bisect.bisect_left(huddle_cutoffs, reported)
            if h < len(huddle_ids):
                hud_id = huddle_ids[h]
                discussed_at = huddle_cutoffs[h] + timedelta(minutes=30)
        counts[status] += 1
        updated = max(filter(None, (reported, first_contact, closed_at, discussed_at)))
        inc.row(
            iid,
            source,
            ref,
            "client",
            client_id,
            None,
            occurred,
            reported,
            due,
            f"{rng.choice(LOCATIONS)} near {d}",
            pc,
            d,
            nalox,
            rng.choice(("ambulance", "police", "peer", "bystander", "hospital")) if nalox else None,
            hospital,
            submitted_json,
            pid,
            person_sex,
            person_age,
            None,
            status,
            first_contact,
            within,
            assigned,
            closed_reason,
            closed_at,
            hud_id,
            discussed_at,
            reported,
            updated,
        )
        n_subs = 1 + (rng.random() < 0.45) + (rng.random() < 0.15)
        chosen = []
        while len(chosen) < n_subs:
            s = sub_names[bisect.bisect_left(sub_cum, rng.random() * sub_cum[-1])]
            if s not in chosen:
                chosen.append(s)
        for pos, s in enumerate(chosen):
            subs.row(iid, pos, s, occurred)  # the report's copy (migration 0002)
        for at, outcome in attempts:
            cid = new_id()
            con.row(
                cid,
                iid,
                at,
                rng.choice(METHODS),
                outcome,
                None,
                "user",
                coordinator_id,
                assigned,
                at,
            )
            if outcome == "contacted":
                for a in rng.sample(ACTIONS, rng.choice((0, 1, 1, 2, 2, 3))):
                    codes.row(cid, "action", a, occurred)
                for r in rng.sample(REFERRALS, rng.choice((0, 0, 1, 1, 2))):
                    codes.row(cid, "referral", r, occurred)

    def work(part: int, nparts: int) -> dict:
        nonlocal inc, subs, con, codes, ref_counter
        rng.seed(seed * 1000 + part)
        ref_counter = itertools.count(part * 100_000_000 + 1)
        inc = Copier(
            pq,
            "incidents",
            [
                "id",
                "source_agency_id",
                "source_ref",
                "created_by_type",
                "created_by_id",
                "request_hash",
                "occurred_at",
                "reported_at",
                "contact_due_at",
                "location_description",
                "postcode",
                "postcode_district",
                "naloxone_administered",
                "naloxone_administered_by",
                "hospital",
                "person_submitted",
                "person_id",
                "person_sex",
                "person_age",
                "notes",
                "fu_status",
                "first_contact_at",
                "within_window",
                "assigned_agency_id",
                "closed_reason",
                "closed_at",
                "discussed_at_huddle_id",
                "discussed_at",
                "created_at",
                "updated_at",
            ],
        )
        subs = Copier(
            pq, "incident_substances", ["incident_id", "position", "substance", "occurred_at"]
        )
        con = Copier(
            pq,
            "contact_attempts",
            [
                "id",
                "incident_id",
                "attempted_at",
                "method",
                "outcome",
                "notes",
                "recorded_by_type",
                "recorded_by_id",
                "agency_id",
                "created_at",
            ],
        )
        codes = Copier(pq, "contact_codes", ["contact_id", "kind", "code", "occurred_at"])

        owner_iter = iter(owners[part::nparts])
        n_hist_part = len(range(part, n_history, nparts))
        n_recent_part = len(owners[part::nparts]) - n_hist_part
        # History: resolved and discussed.
        for _ in range(n_hist_part):
            occurred = history_start + timedelta(seconds=rng.randrange(hist_seconds))
            reported = occurred + timedelta(minutes=rng.expovariate(1 / 180))
            emit(
                next(owner_iter),
                occurred,
                reported,
                status="contacted" if rng.random() < 0.72 else "closed",
                discussed=True,
            )
        say(f"history incidents (part {part}) {n_hist_part:,} at {time.perf_counter() - t0:.1f}s")
        # Recent: the same volume at every size; open follow-ups, discussed when a huddle passed.
        for _ in range(n_recent_part):
            occurred = recent_start + timedelta(seconds=rng.randrange(recent_seconds))
            reported = min(occurred + timedelta(minutes=rng.expovariate(1 / 180)), anchor)
            age = anchor - occurred
            if age > timedelta(days=5):
                status = "contacted" if rng.random() < 0.8 else "closed"
            else:
                status = "contacted" if rng.random() < 0.35 else "awaiting_contact"
            discussed = reported < agenda_cutoff - timedelta(days=1) or (
                status != "awaiting_contact" and reported < agenda_cutoff - timedelta(hours=12)
            )
            emit(next(owner_iter), occurred, reported, status=status, discussed=discussed)
        # The sweep benchmark's batch: due in (anchor - 6 h, anchor], reported 1 h before the anchor.
        for _ in range(overdue_batch if part == 0 else 0):
            occurred = anchor - window - timedelta(seconds=rng.randrange(1, 6 * 3600))
            emit(
                rng.randrange(n_people) if rng.random() < 0.95 else None,
                occurred,
                anchor - timedelta(hours=1),
                status="awaiting_contact",
                discussed=False,
            )
            counts["overdue_batch"] += 1
        part_stats = {
            "incidents": inc.close(),
            "incident_substances": subs.close(),
            "contact_attempts": con.close(),
            "contact_codes": codes.close(),
        }
        return {"stats": part_stats, "counts": counts, "person_last": person_last}

    nparts = max(1, int(os.environ.get("BENCH_GEN_PROCS", "2")))
    if nparts == 1 or incidents < 5000:
        parts = [work(0, 1)]
    else:
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()

        def child(part: int) -> None:
            try:
                queue.put((part, work(part, nparts)))
            except BaseException:  # noqa: BLE001 - the parent reports the missing part
                traceback.print_exc()
                queue.put((part, None))
            queue.close()
            queue.join_thread()
            os._exit(0)  # never run the parent's finalizers (its connection) in the child

        procs = [ctx.Process(target=child, args=(k,)) for k in range(nparts)]
        for proc in procs:
            proc.start()
        got = dict(queue.get() for _ in procs)
        for proc in procs:
            proc.join()
        if any(v is None for v in got.values()):
            raise RuntimeError("a generator worker failed (see above)")
        parts = [got[k] for k in range(nparts)]
    for result in parts:
        for k, v in result["stats"].items():
            stats[k] = stats.get(k, 0) + v
        for k, v in result["counts"].items():
            counts[k] += v
        for owner, last in result["person_last"].items():
            if owner not in person_last or last > person_last[owner]:
                person_last[owner] = last
    counts["awaiting_contact"] -= counts["overdue_batch"]
    say(
        f"incidents {stats['incidents']:,} contacts {stats['contact_attempts']:,} "
        f"at {time.perf_counter() - t0:.1f}s"
    )

    # --- safety plans for people with repeats ----------------------------------------------
    spv = Copier(
        pq,
        "safety_plan_versions",
        [
            "id",
            "person_id",
            "version",
            "is_current",
            "risk_level",
            "risk_factors",
            "lead_agency_id",
            "review_on",
            "notes",
            "created_by_id",
            "created_at",
        ],
    )
    spa = Copier(
        pq,
        "safety_plan_actions",
        [
            "id",
            "plan_version_id",
            "person_id",
            "position",
            "description",
            "owner_agency_id",
            "due_on",
            "done",
            "extra",
        ],
    )
    for idx in range(n_single, n_people):
        if idx not in person_last:
            continue
        last = person_last[idx]
        versions = 1 + (rng.random() < 0.4)
        for v in range(1, versions + 1):
            vid = new_id()
            created = last + timedelta(days=1 + v)
            created = min(created, anchor)
            current = v == versions
            factors = rng.sample(RISK_FACTORS, rng.randrange(1, 4))
            if "repeat_overdose" not in factors:
                factors.insert(0, "repeat_overdose")
            spv.row(
                vid,
                person_ids[idx],
                v,
                current,
                rng.choice(("red", "amber", "amber", "green")),
                json.dumps(factors),
                agency_ids[rng.choice(FOLLOW_UP_AGENCIES)],
                (created + timedelta(days=28)).date(),
                None,
                coordinator_id,
                created,
            )
            for pos in range(rng.randrange(2, 5)):
                due_on = (created + timedelta(days=rng.randrange(3, 28))).date()
                done = (
                    (not current)
                    or due_on < (anchor - timedelta(days=30)).date()
                    or rng.random() < 0.5
                )
                spa.row(
                    new_id(),
                    vid,
                    person_ids[idx],
                    pos,
                    rng.choice(PLAN_ACTIONS),
                    agency_ids[rng.choice(FOLLOW_UP_AGENCIES)],
                    due_on,
                    done,
                    None,
                )
    stats["safety_plan_versions"] = spv.close()
    stats["safety_plan_actions"] = spa.close()
    conn.commit()
    load_s = time.perf_counter() - t0
    say(
        f"copied at {load_s:.1f}s; restoring {len(index_defs)} indexes and {len(constraints)} constraints"
    )

    conn.autocommit = True
    conn.execute("SET maintenance_work_mem = '512MB'")
    conn.execute("SET max_parallel_maintenance_workers = 2")
    index_workers = int(os.environ.get("BENCH_INDEX_WORKERS", "2"))
    index_s, constraint_s = restore_secondary(
        conn, index_defs, constraints, url=pq, workers=index_workers
    )
    say(
        f"indexes in {index_s:.1f}s ({index_workers} at a time), "
        f"keys and constraints in {constraint_s:.1f}s"
    )
    loaded = time.perf_counter() - t0
    # VACUUM as well as ANALYZE: it sets the visibility map, without which no index-only scan
    # is really index-only. A production server's autovacuum does this soon after a load;
    # this machine's PostgreSQL runs with autovacuum off, so the bench does it itself.
    for t in BULK_TABLES:
        conn.execute(f"VACUUM (ANALYZE) {t}")
    # And a checkpoint: the load wrote gigabytes of WAL, and the server's own checkpoints of
    # it would otherwise flush in the middle of the first measurements (commits stalling on
    # I/O, seen as 100-250 ms tails on whichever read the bench was timing).
    conn.execute("CHECKPOINT")
    conn.close()
    total = time.perf_counter() - t0
    say(f"loaded in {loaded:.1f}s; vacuumed and analysed, done in {total:.1f}s")
    info = {
        "database": database_name(url),
        "seed": seed,
        "anchor": anchor.isoformat().replace("+00:00", "Z"),
        "agenda_date": agenda_day.isoformat(),
        "recent_per_day": recent_per_day,
        "years_of_history": years,
        "overdue_batch": overdue_batch,
        "rows": stats,
        "follow_ups": counts,
        "people_with_repeats": n_repeat_people,
        "seconds_copy": round(load_s, 1),
        "seconds_loaded": round(loaded, 1),
        "seconds_total": round(total, 1),
        "agency_ids": dict(zip([a for a, _ in AGENCIES], agency_ids, strict=True)),
    }
    out = os.path.join(ROOT, "bench", "results", f"dataset-{database_name(url)}.json")
    with open(out, "w") as fh:
        json.dump(info, fh, indent=2)
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=bench_url())
    p.add_argument("--incidents", type=int, default=int(os.environ.get("BENCH_INCIDENTS", "10000")))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--anchor", help="RFC 3339 'now' of the data set (default: the wall clock)")
    p.add_argument("--recent-per-day", type=int, default=30)
    p.add_argument("--overdue-batch", type=int, default=0)
    p.add_argument("--contacts-per-incident", type=float, default=4.0)
    p.add_argument("--years", type=float, default=10.0)
    args = p.parse_args(argv)
    anchor = datetime.fromisoformat(args.anchor.replace("Z", "+00:00")) if args.anchor else None
    info = generate(
        args.url,
        incidents=args.incidents,
        seed=args.seed,
        anchor=anchor,
        recent_per_day=args.recent_per_day,
        overdue_batch=args.overdue_batch,
        contacts_per_incident=args.contacts_per_incident,
        years=args.years,
    )
    print(json.dumps({k: info[k] for k in ("database", "rows", "seconds_total")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
