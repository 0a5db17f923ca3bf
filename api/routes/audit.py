from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime
from sqlalchemy import select

from api.deps import DbSession, Paging, UnitOfWorkRoute, require
from api.schemas.accounts import AuditOut
from api.schemas.common import Page, problem_responses
from models.audit import AuditChainLink, AuditEntry
from services.errors import Invalid
from services.pagination import keyset_page
from services.principal import Principal

router = APIRouter(route_class=UnitOfWorkRoute, tags=["audit"])
Admin = Annotated[Principal, Depends(require("admin"))]


@router.get("/v1/audit", response_model=Page[AuditOut], responses=problem_responses())
def list_audit(
    principal: Admin,
    session: DbSession,
    paging: Paging,
    subject_id: Annotated[str | None, Query(max_length=64)] = None,
    actor_id: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=30)] = None,
    from_: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    to: Annotated[AwareDatetime | None, Query()] = None,
) -> Page[AuditOut]:
    """The audit log, newest first."""
    if from_ and to and from_ > to:
        raise Invalid("from must not be after to", loc=["query", "from"])
    # The entry's hash is its chain link's (outer join: an entry whose link was removed is
    # still listed, with no hash; `nfod audit verify` reports it).
    stmt = select(AuditEntry, AuditChainLink.hash).outerjoin(
        AuditChainLink, AuditChainLink.entry_seq == AuditEntry.seq
    )
    if subject_id:
        stmt = stmt.where(AuditEntry.subject_id == subject_id)
    if actor_id:
        stmt = stmt.where(AuditEntry.actor_id == actor_id)
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    if from_:
        stmt = stmt.where(AuditEntry.at >= from_)
    if to:
        stmt = stmt.where(AuditEntry.at <= to)
    page = keyset_page(
        session,
        stmt,
        keys=[AuditEntry.seq],
        cursor=paging.cursor,
        limit=paging.limit,
        descending=True,
        key_of=lambda row: (row[0].seq,),
        scalars=False,
    )
    return Page[AuditOut](
        items=[_out(entry, hash_) for entry, hash_ in page.items],
        next_cursor=page.next_cursor,
    )


def _out(entry: AuditEntry, hash_: str | None) -> AuditOut:
    values = {name: getattr(entry, name) for name in AuditOut.model_fields if name != "hash"}
    return AuditOut(**values, hash=hash_)
