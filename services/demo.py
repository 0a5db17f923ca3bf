"""``nfod demo``: a realistic, deterministic demo data set for an empty database.

A Dundee-style partnership (the agencies in DOMAIN.md), one user per role with printed
demo passwords, a partner API key, and a few hundred overdoses over the last five weeks:
repeat overdoses by the same people, unidentified persons, contacts (some late, some
never), closed follow-ups, postcode districts DD1-DD5 (skewed towards the centre).
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.agency import Agency
from models.incident import Incident
from models.user import User
from services import accounts, follow_ups, huddles, intake
from services.calendar import WorkingCalendar
from services.config import Settings, get_settings
from services.errors import Conflict
from services.principal import Principal

AGENCIES = [
    ("Scottish Ambulance Service", "statutory"),
    ("Police Scotland", "statutory"),
    ("NHS Tayside Emergency Department", "statutory"),
    ("Dundee Drug and Alcohol Recovery Service (DDARS)", "statutory"),
    ("Hillcrest Futures", "third_sector"),
    ("We Are With You", "third_sector"),
    ("Positive Steps", "third_sector"),
    ("Tayside Council on Alcohol", "third_sector"),
    ("Dundee Women's Aid", "third_sector"),
    ("Women's Rape and Sexual Abuse Centre", "third_sector"),
    ("Transform (Housing First)", "third_sector"),
    ("Children and Families Social Work", "statutory"),
    ("Community Justice Social Work", "statutory"),
    ("Dundee Independent Advocacy Support (DIAS)", "third_sector"),
    ("SafeZone Bus", "third_sector"),
    ("Community Pharmacies", "other"),
]
SOURCES = [  # (agency index, weight, naloxone_by, ref prefix)
    (0, 45, "ambulance", "SAS"),
    (1, 20, "police", "PS"),
    (2, 20, "hospital", "NHST"),
    (14, 8, "outreach", "SZB"),
    (15, 7, "bystander", "PHARM"),
]
OUTREACH = [4, 5, 6, 3]  # the agencies that take follow-ups
DISTRICTS = [("DD1", 30), ("DD2", 15), ("DD3", 30), ("DD4", 20), ("DD5", 5)]
PLACES = [
    "Hilltown flats stairwell",
    "Overgate shopping centre toilets",
    "Lochee High Street",
    "Whitfield Drive",
    "City centre hostel",
    "Home address",
    "Fintry Road",
    "Stobswell, Albert Street",
    "Dens Road bus stop",
    "Baxter Park",
    "Seagate bus station",
    "Kirkton, Derwent Avenue",
]
SUBSTANCES = [
    (["heroin"], 30),
    (["street benzodiazepine"], 12),
    (["heroin", "street benzodiazepine"], 25),
    (["methadone", "alcohol"], 8),
    (["cocaine", "alcohol"], 8),
    (["crack cocaine", "heroin"], 7),
    (["pregabalin", "heroin"], 5),
    (["nitazene"], 2),
    ([], 3),
]
GIVEN_M = [
    "James",
    "John",
    "Scott",
    "David",
    "Craig",
    "Mark",
    "Steven",
    "Paul",
    "Gary",
    "Ryan",
    "Jamie",
    "Sean",
    "Kevin",
    "Darren",
    "Lee",
    "Stuart",
    "Graeme",
    "Connor",
]
GIVEN_F = [
    "Lisa",
    "Claire",
    "Nicola",
    "Kirsty",
    "Gemma",
    "Laura",
    "Donna",
    "Michelle",
    "Amy",
    "Stacey",
    "Siobhán",
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
    "Reid",
    "Murray",
    "Scott",
    "MacDonald",
    "O'Neill",
    "Duncan",
    "Fraser",
    "Ritchie",
    "Kerr",
    "Doig",
    "McKay",
    "Ross",
]
USERS = [  # (username, role, agency index, display name, password)
    ("demo-admin", "admin", None, "Demo Administrator", "demo-admin-pass"),
    ("demo-coordinator", "coordinator", None, "Morag Coordinator", "demo-coordinator-pass"),
    ("demo-outreach", "outreach", 4, "Kieran (Hillcrest outreach)", "demo-outreach-pass"),
    ("demo-outreach-wawy", "outreach", 5, "Aileen (We Are With You)", "demo-outreach2-pass"),
    ("demo-analyst", "analyst", None, "Priya Analyst", "demo-analyst-pass"),
]
INCIDENTS = 280
PEOPLE = 170
DAYS = 35


def _chi(dob: date, male: bool, rng: random.Random) -> str | None:
    for _ in range(20):
        serial = rng.randrange(0, 100)
        sex_digit = rng.choice([1, 3, 5, 7, 9] if male else [0, 2, 4, 6, 8])
        stem = f"{dob:%d%m%y}{serial:02d}{sex_digit}"
        total = sum(int(c) * w for c, w in zip(stem, range(10, 1, -1), strict=True))
        check = 11 - total % 11
        check = 0 if check == 11 else check
        if check != 10:
            return f"{stem}{check}"
    return None


def _weighted(rng: random.Random, items):
    return rng.choices([i for i, _ in items], weights=[w for _, w in items], k=1)[0]


def _postcode(rng: random.Random) -> str:
    district = _weighted(rng, DISTRICTS)
    letters = "ABDEFGHJLNPQRSTUWXYZ"
    return f"{district} {rng.randint(1, 9)}{rng.choice(letters)}{rng.choice(letters)}"


def _refuse_if_not_empty(session: Session) -> None:
    incidents = session.scalar(select(func.count()).select_from(Incident))
    others = session.scalar(select(func.count()).select_from(User).where(User.role != "admin"))
    admins = session.scalar(select(func.count()).select_from(User).where(User.role == "admin"))
    agencies = session.scalar(select(func.count()).select_from(Agency))
    if incidents or others or admins > 1 or agencies:
        raise Conflict(
            "the database already has data (incidents, agencies or users other than the first "
            "administrator); nfod demo only loads into an empty database"
        )


def load_demo(
    session: Session, *, now: datetime, seed: int = 2026, settings: Settings | None = None
) -> str:
    """Load the demo set; returns a printable summary (with the demo passwords)."""
    settings = settings or get_settings()
    _refuse_if_not_empty(session)
    rng = random.Random(seed)
    agency_ids = []
    for name, kind in AGENCIES:
        agency = Agency(name=name, kind=kind, created_at=now)
        session.add(agency)
        session.flush()
        agency_ids.append(agency.id)
    users = {}
    for username, role, agency_index, display, password in USERS:
        user = accounts.create_user(
            session,
            actor=None,
            now=now,
            username=username,
            password=password,
            role=role,
            agency_id=agency_ids[agency_index] if agency_index is not None else None,
            display_name=display,
        )
        users[role] = users.get(role) or user
    issued = accounts.create_client(
        session, actor=None, now=now, name="SAS incident feed (demo)", agency_id=agency_ids[0]
    )
    coordinator = Principal(
        kind="user",
        id=users["coordinator"].id,
        role="coordinator",
        agency_id=None,
        username="demo-coordinator",
    )

    people = []
    for _ in range(PEOPLE):
        male = rng.random() < 0.7
        dob = date(rng.randint(1965, 2003), rng.randint(1, 12), rng.randint(1, 28))
        people.append(
            {
                "given_name": rng.choice(GIVEN_M if male else GIVEN_F),
                "family_name": rng.choice(FAMILY),
                "date_of_birth": dob,
                "sex": "male" if male else "female",
                "chi": _chi(dob, male, rng) if rng.random() < 0.6 else None,
                "postcode": _postcode(rng),
                "phone": f"07700 9{rng.randint(10000, 99999)}",
            }
        )
    # A few people account for many incidents (repeats are the rule, not the exception).
    weights = [8 if i < 12 else 3 if i < 50 else 1 for i in range(PEOPLE)]

    start = now - timedelta(days=DAYS)
    times = sorted(
        start + timedelta(seconds=rng.randint(0, DAYS * 86400 - 3 * 3600)) for _ in range(INCIDENTS)
    )
    counters: dict[str, int] = {}
    events: list[tuple[datetime, int, Any]] = []
    for occurred in times:
        agency_index, _, nalox_by, prefix = _weighted(
            rng, [((a, w, n, p), w) for a, w, n, p in SOURCES]
        )
        counters[prefix] = counters.get(prefix, 0) + 1
        reported = occurred + timedelta(minutes=rng.choice([20, 45, 90, 180, 600, 1500, 2900]))
        reported = min(reported, now)
        data: dict[str, Any] = {
            "source_ref": f"{prefix}-{occurred:%Y}-{counters[prefix]:06d}",
            "occurred_at": occurred,
            "reported_at": reported,
            "location": {"description": rng.choice(PLACES), "postcode": _postcode(rng)},
            "substances": _weighted(rng, SUBSTANCES),
            "naloxone_administered": rng.random() < 0.75,
            "hospital": rng.choice(["conveyed", "declined", "declined", "not_required", "unknown"]),
        }
        if data["naloxone_administered"]:
            data["naloxone_administered_by"] = (
                nalox_by if rng.random() < 0.7 else rng.choice(["peer", "bystander"])
            )
        if rng.random() < 0.12:
            data["person"] = (
                {"sex": rng.choice(["male", "female", "unknown"])} if rng.random() < 0.5 else None
            )
        else:
            p = rng.choices(people, weights=weights, k=1)[0]
            block = {k: v for k, v in p.items() if v is not None}
            if rng.random() < 0.25:
                block.pop("chi", None)  # not every partner knows the CHI number
            if rng.random() < 0.2:
                block.pop("phone", None)
            data["person"] = block
        events.append(
            (reported, 0, (agency_index, {k: v for k, v in data.items() if v is not None}))
        )
    # The morning huddles of every working day before today (today's agenda stays live).
    cal = WorkingCalendar.from_settings(settings)
    today = cal.local_date(now)
    day = cal.local_date(start)
    while day < today:
        if cal.is_working_day(day):
            events.append((cal.cutoff_at(day) + timedelta(minutes=30), 1, day))
        day += timedelta(days=1)
    events.sort(key=lambda e: (e[0], e[1]))

    created = contacts = closed = unidentified = huddles_held = 0
    for at, kind, payload in events:
        if kind == 1:
            view = huddles.hold_huddle(
                session,
                principal=coordinator,
                now=at,
                settings=settings,
                day=payload,
                chair_name="Morag Coordinator",
            )
            huddles_held += 1
            for item in view["new"]:
                huddles.record_discussion(
                    session,
                    principal=coordinator,
                    now=at,
                    settings=settings,
                    huddle_id=view["id"],
                    incident_id=item["incident_id"],
                    changes={
                        "discussed": True,
                        "assigned_agency_id": agency_ids[rng.choice(OUTREACH)],
                    },
                )
            continue
        agency_index, data = payload
        if not data.get("person") or "family_name" not in data["person"]:
            unidentified += 1
        partner = Principal(
            kind="client", id=issued.client.id, role="partner", agency_id=agency_ids[agency_index]
        )
        incident, _ = intake.create_incident(
            session, principal=partner, now=at, settings=settings, data=data
        )
        created += 1
        occurred = incident.occurred_at
        age = now - occurred
        if age < timedelta(hours=20) or incident.fu_status != "awaiting_contact":
            continue  # too recent, or already satisfied by a contact with the same person
        roll = rng.random()
        if roll < 0.72:
            first = occurred + timedelta(hours=rng.choice([6, 18, 30, 44, 60, 70, 80, 110]))
            if first < now:
                if rng.random() < 0.5 and first - timedelta(hours=8) > occurred:
                    follow_ups.record_attempt(
                        session,
                        principal=coordinator,
                        now=now,
                        incident_id=incident.id,
                        attempted_at=first - timedelta(hours=8),
                        method=rng.choice(["phone", "text"]),
                        outcome=rng.choice(["no_answer", "message_left", "not_found"]),
                    )
                    contacts += 1
                actions = rng.sample(
                    [
                        "naloxone_supplied",
                        "harm_reduction_advice",
                        "injecting_equipment",
                        "wound_care",
                        "bbv_test",
                    ],
                    k=rng.randint(1, 3),
                )
                referrals = rng.sample(
                    [
                        "drug_treatment",
                        "same_day_prescribing",
                        "housing",
                        "mental_health",
                        "womens_services",
                    ],
                    k=rng.randint(0, 2),
                )
                follow_ups.record_attempt(
                    session,
                    principal=coordinator,
                    now=now,
                    incident_id=incident.id,
                    attempted_at=first,
                    method=rng.choice(["home_visit", "street", "phone", "at_service", "hospital"]),
                    outcome="contacted",
                    actions=actions,
                    referrals=referrals,
                )
                contacts += 1
        elif roll < 0.82 and age > timedelta(days=5):
            incident.fu_status = "closed"
            incident.closed_reason = rng.choice(
                ["declined", "already_engaged", "in_custody", "moved_away", "unable_to_locate"]
            )
            incident.closed_at = occurred + timedelta(days=4)
            closed += 1
        elif rng.random() < 0.5:
            follow_ups.record_attempt(
                session,
                principal=coordinator,
                now=now,
                incident_id=incident.id,
                attempted_at=min(now, occurred + timedelta(hours=20)),
                method="phone",
                outcome="no_answer",
            )
            contacts += 1
    session.flush()
    persons = session.scalar(
        select(func.count()).select_from(Incident.__table__).where(Incident.person_id.is_not(None))
    )
    lines = [
        f"Demo data loaded (seed {seed}): {len(AGENCIES)} agencies, "
        f"{created} incidents over {DAYS} days "
        f"({unidentified} unidentified, {persons} linked to people), {contacts} contact attempts, "
        f"{closed} closed follow-ups, {huddles_held} huddles held.",
        "",
        "Demo sign-ins (username / password / role):",
        *[f"  {u:<20} {p:<24} {r}" for u, r, _, _, p in USERS],
        "",
        f"Partner API key for the ambulance feed (shown once): {issued.api_key}",
        "These are DEMO credentials: never load the demo into a production database.",
    ]
    return "\n".join(lines)
