"""The ``nfod`` console command."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime

from services.config import ConfigError, get_settings


def _now() -> datetime:
    return datetime.now(UTC)


def _session():
    from services.db import make_engine, make_session_factory

    settings = get_settings()
    return make_session_factory(make_engine(settings.database_url))()


def cmd_migrate(args) -> int:
    from services import migrations

    migrations.upgrade(get_settings().database_url, args.revision)
    print(f"database migrated to {args.revision}")
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    from api.app import create_app
    from api.logging_setup import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    app = create_app(settings, run_scheduler=not args.no_scheduler)
    host = args.host or settings.host
    port = args.port or settings.port
    print(
        f"NFOD Response on http://{host}:{port}  (API docs: http://{host}:{port}/docs, web client: http://{host}:{port}/app/)",
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, workers=1)
    return 0


def cmd_scheduler(args) -> int:
    from api.scheduler import run_forever

    return run_forever(get_settings())


def cmd_sweep(args) -> int:
    from api.scheduler import run_once

    at = None
    if args.at:
        at = datetime.fromisoformat(args.at.replace("Z", "+00:00"))
        if at.tzinfo is None:
            print("--at needs an offset, e.g. 2026-11-23T09:00:00Z", file=sys.stderr)
            return 2
    return run_once(get_settings(), at=at)


def cmd_audit_verify(args) -> int:
    from services import audit

    session = _session()
    try:
        result = audit.verify_chain(session)
    finally:
        session.close()
    if result.ok:
        print(f"audit log intact: {result.checked} entries verified")
        return 0
    print(
        f"audit log BROKEN at entry seq={result.first_bad_seq} id={result.first_bad_id}: "
        f"{result.reason} ({result.checked} entries before it verified)",
        file=sys.stderr,
    )
    return 1


def cmd_demo(args) -> int:
    from services import demo

    session = _session()
    try:
        summary = demo.load_demo(session, now=_now(), seed=args.seed)
        session.commit()
    except Exception as exc:
        session.rollback()
        print(f"demo not loaded: {exc}", file=sys.stderr)
        return 1
    finally:
        session.close()
    print(summary)
    return 0


def cmd_users_create(args) -> int:
    from services import accounts

    password = args.password or getpass.getpass("password: ")
    session = _session()
    try:
        user = accounts.create_user(
            session,
            actor=None,
            now=_now(),
            username=args.username,
            password=password,
            role=args.role,
            agency_id=args.agency_id,
            display_name=args.display_name,
        )
        session.commit()
        print(f"created {user.role} {user.username} ({user.id})")
        return 0
    except Exception as exc:  # noqa: BLE001 - report domain errors plainly
        session.rollback()
        print(f"not created: {getattr(exc, 'detail', exc)}", file=sys.stderr)
        return 1
    finally:
        session.close()


def cmd_agencies_create(args) -> int:
    from services import accounts

    session = _session()
    try:
        agency = accounts.create_agency(
            session, actor=None, now=_now(), name=args.name, kind=args.kind
        )
        session.commit()
        print(f"created agency {agency.name} ({agency.id})")
        return 0
    except Exception as exc:  # noqa: BLE001
        session.rollback()
        print(f"not created: {getattr(exc, 'detail', exc)}", file=sys.stderr)
        return 1
    finally:
        session.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nfod", description="NFOD Response service")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="upgrade the database schema (alembic upgrade head)")
    p.add_argument("--revision", default="head")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser(
        "serve", help="serve the API (with the scheduler loop unless --no-scheduler)"
    )
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--no-scheduler", action="store_true")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("scheduler", help="run the sweep loop every NFOD_SWEEP_SECONDS")
    p.set_defaults(func=cmd_scheduler)

    p = sub.add_parser("sweep", help="run one sweep and one webhook delivery pass, then exit")
    p.add_argument("--at", help="the clock for this sweep, RFC 3339 with offset")
    p.set_defaults(func=cmd_sweep)

    audit_p = sub.add_parser("audit", help="audit log tools").add_subparsers(
        dest="audit_command", required=True
    )
    p = audit_p.add_parser("verify", help="recompute the hash chain; non-zero exit if broken")
    p.set_defaults(func=cmd_audit_verify)

    p = sub.add_parser("demo", help="load a realistic demo data set into an empty database")
    p.add_argument("--seed", type=int, default=2026)
    p.set_defaults(func=cmd_demo)

    users_p = sub.add_parser("users", help="user accounts").add_subparsers(
        dest="users_command", required=True
    )
    p = users_p.add_parser("create", help="create a user")
    p.add_argument("username")
    p.add_argument("--role", required=True, choices=["admin", "coordinator", "outreach", "analyst"])
    p.add_argument("--agency-id")
    p.add_argument("--display-name")
    p.add_argument("--password", help="prompted for when omitted")
    p.set_defaults(func=cmd_users_create)

    agencies_p = sub.add_parser("agencies", help="agencies").add_subparsers(
        dest="agencies_command", required=True
    )
    p = agencies_p.add_parser("create", help="create an agency")
    p.add_argument("name")
    p.add_argument("--kind", required=True, choices=["statutory", "third_sector", "other"])
    p.set_defaults(func=cmd_agencies_create)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
