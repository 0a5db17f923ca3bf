"""Build alert/report test data by inserting model rows directly (no intake API needed)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import models
from models.base import new_id
from models.contact import ContactAttempt, ContactCode
from models.incident import Incident, IncidentSubstance
from models.person import Person
from models.safety_plan import SafetyPlanAction, SafetyPlanVersion

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # a Monday, after the clocks went back


class Data:
    """Inserts rows with a session factory; each call commits."""

    def __init__(self, session_factory, window_hours: int = 72):
        self.sf = session_factory
        self.window = timedelta(hours=window_hours)
        self.n = 0

    def agency(self, name: str | None = None) -> str:
        self.n += 1
        with self.sf() as s, s.begin():
            a = models.Agency(
                id=new_id(),
                name=name or f"Agency {self.n} {new_id()[:6]}",
                kind="statutory",
                created_at=T0,
            )
            s.add(a)
        return a.id

    def person(self, *, sex: str | None = None, dob: date | None = None) -> str:
        with self.sf() as s, s.begin():
            p = Person(id=new_id(), sex=sex, date_of_birth=dob, created_at=T0, updated_at=T0)
            s.add(p)
        return p.id

    def incident(
        self,
        *,
        occurred_at: datetime,
        source_agency_id: str,
        person_id: str | None = None,
        district: str | None = None,
        assigned_agency_id: str | None = None,
        substances: tuple[str, ...] = (),
        reported_at: datetime | None = None,
    ) -> str:
        self.n += 1
        with self.sf() as s, s.begin():
            i = Incident(
                id=new_id(),
                source_agency_id=source_agency_id,
                source_ref=f"REF-{self.n}-{new_id()[:8]}",
                created_by_type="user",
                created_by_id=new_id(),
                occurred_at=occurred_at,
                reported_at=reported_at or occurred_at,
                contact_due_at=occurred_at + self.window,
                postcode=f"{district} 1AA" if district else None,
                postcode_district=district,
                person_id=person_id,
                fu_status="awaiting_contact",
                assigned_agency_id=assigned_agency_id,
                created_at=occurred_at,
                updated_at=occurred_at,
            )
            s.add(i)
            s.flush()
            for pos, sub in enumerate(substances):
                s.add(IncidentSubstance(incident_id=i.id, position=pos, substance=sub))
        return i.id

    def contact(
        self,
        incident_id: str,
        *,
        at: datetime,
        outcome: str = "contacted",
        actions: tuple[str, ...] = (),
        referrals: tuple[str, ...] = (),
    ) -> str:
        with self.sf() as s, s.begin():
            inc = s.get(Incident, incident_id)
            c = ContactAttempt(
                id=new_id(),
                incident_id=incident_id,
                attempted_at=at,
                method="phone",
                outcome=outcome,
                recorded_by_type="user",
                recorded_by_id=new_id(),
                created_at=at,
            )
            s.add(c)
            s.flush()
            for code in actions:
                s.add(ContactCode(contact_id=c.id, kind="action", code=code))
            for code in referrals:
                s.add(ContactCode(contact_id=c.id, kind="referral", code=code))
            if outcome == "contacted" and inc.first_contact_at is None:
                inc.fu_status = "contacted"
                inc.first_contact_at = at
                inc.within_window = at <= inc.contact_due_at
        return c.id

    def close(self, incident_id: str, *, at: datetime, reason: str = "declined") -> None:
        with self.sf() as s, s.begin():
            inc = s.get(Incident, incident_id)
            inc.fu_status = "closed"
            inc.closed_reason = reason
            inc.closed_at = at

    def plan(
        self,
        person_id: str,
        *,
        actions: list[dict],
        lead_agency_id: str | None = None,
        at: datetime = T0,
    ) -> str:
        """A new current plan version (the previous one stops being current)."""
        with self.sf() as s, s.begin():
            versions = s.query(SafetyPlanVersion).filter_by(person_id=person_id).all()
            for v in versions:
                v.is_current = False
            s.flush()
            v = SafetyPlanVersion(
                id=new_id(),
                person_id=person_id,
                version=len(versions) + 1,
                is_current=True,
                risk_level="red",
                risk_factors=[],
                lead_agency_id=lead_agency_id,
                created_by_id=new_id(),
                created_at=at,
            )
            s.add(v)
            s.flush()
            for pos, a in enumerate(actions):
                s.add(
                    SafetyPlanAction(
                        id=new_id(),
                        plan_version_id=v.id,
                        person_id=person_id,
                        position=pos,
                        description=a["description"],
                        owner_agency_id=a.get("owner_agency_id"),
                        due_on=a.get("due_on"),
                        done=a.get("done", False),
                    )
                )
        return v.id


def new_webhook_row(
    sf, *, url: str, kinds: list[str] | None = None, secret: str | None = None
) -> tuple[str, str]:
    """A registered webhook (bypassing the SSRF check for local receivers)."""
    from models.alert import ALERT_KINDS
    from models.webhook import Webhook
    from services.webhooks import new_secret

    secret = secret or new_secret()
    with sf() as s, s.begin():
        w = Webhook(
            id=new_id(),
            url=url,
            kinds=kinds or list(ALERT_KINDS),
            secret=secret,
            active=True,
            created_by_id=new_id(),
            created_at=T0,
        )
        s.add(w)
    return w.id, secret
