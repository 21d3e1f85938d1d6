"""``perkamo operators add|list|remove|set-role|reset-password``: the console's operators.
There is no open default: the first operator is created here (``make run`` creates a demo
one and prints its login)."""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
from pathlib import Path

from perkamo.access.admin import AdminError
from perkamo.console import security
from storage import Database
from storage import console as store
from storage.database import Conn

DEMO_OPERATOR = "demo@perkamo.local"


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> list[argparse.ArgumentParser]:
    operators = sub.add_parser("operators", help="the console's operators").add_subparsers(
        dest="action", required=True
    )
    add = operators.add_parser("add", help="add an operator (prints a generated password)")
    add.add_argument("email")
    add.add_argument("--role", choices=security.ROLES, default="viewer")
    listing = operators.add_parser("list", help="list operators")
    remove = operators.add_parser("remove", help="remove an operator (ends their sessions)")
    remove.add_argument("email")
    role = operators.add_parser("set-role", help="change an operator's role")
    role.add_argument("email")
    role.add_argument("role", choices=security.ROLES)
    reset = operators.add_parser("reset-password", help="a new password; ends their sessions")
    reset.add_argument("email")
    for p in (add, reset):
        p.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    return [add, listing, remove, role, reset]


def cli_actor() -> str:
    """Who changed something from the command line, for the audit log."""
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """(the password, whether it was generated and must be shown)."""
    if args.password_stdin:
        given = sys.stdin.readline().rstrip("\n")
        if len(given) < 12:
            raise AdminError("a password needs at least 12 characters")
        return given, False
    return security.new_password(), True


def run(args: argparse.Namespace, db: Database) -> None:
    email = getattr(args, "email", "").strip().lower()
    if args.action == "list":
        for op in db.call(store.list_operators):
            print(f"{op.email}\t{op.role}\tsince {op.created_at:%Y-%m-%d}")
        return
    if args.action in ("add", "reset-password"):
        password, generated = _password(args)
        hashed = security.hash_password(password)

        def change(conn: Conn) -> None:
            if args.action == "add":
                try:
                    store.add_operator(conn, email, args.role, hashed)
                except store.OperatorExists:
                    raise AdminError(f"operator {email} exists") from None
            elif not store.set_password(conn, email, hashed):
                raise AdminError(f"no operator {email}")
            store.audit(conn, cli_actor(), f"operator.{args.action}", target=email)

        db.call(change)
        print(
            f"{args.action.replace('-', ' ')}: {email}"
            + (f" ({args.role})" if args.action == "add" else "")
        )
        if generated:
            print(f"password: {password}")
            print("Store it now: it is shown once.")
        return

    def update(conn: Conn) -> None:
        done = (store.remove_operator(conn, email) if args.action == "remove"
                else store.set_role(conn, email, args.role))  # fmt: skip
        if not done:
            raise AdminError(f"no operator {email}")
        store.audit(conn, cli_actor(), f"operator.{args.action}", target=email)

    db.call(update)
    print(f"{args.action}: {email}")


def ensure_demo_operator(conn: Conn, password_file: Path) -> tuple[str, str]:
    """The demo console login (admin), its password kept in ``password_file``."""
    if password_file.exists():
        password = password_file.read_text(encoding="utf-8").strip()
        found = store.get_operator(conn, DEMO_OPERATOR)
        if found is not None and security.check_password(found.password_hash, password):
            return DEMO_OPERATOR, password
    password = security.new_password()
    hashed = security.hash_password(password)
    if not store.set_password(conn, DEMO_OPERATOR, hashed):
        store.add_operator(conn, DEMO_OPERATOR, "admin", hashed)
    password_file.parent.mkdir(parents=True, exist_ok=True)
    password_file.write_text(password + "\n", encoding="utf-8")
    password_file.chmod(0o600)
    return DEMO_OPERATOR, password
