"""The console's request cycle: routing, sessions, CSRF and origin checks, roles, the
security headers, and rendering (CONSOLE.md).

Every console request passes here: a page needs a live session (else the login page);
every POST needs the session's CSRF token and a same-origin request; a mutation needs the
``admin`` role; every answer carries the security headers. API keys never open the
console, and a console session never authorizes ``/v1/*`` (the API edge reads only keys).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import msgspec
from quart import Request, Response

from perkamo.console import security
from perkamo.errors import PerkamoError
from perkamo.http.router import decode_segment
from perkamo.runtime import Runtime
from storage import console as store
from storage.spaces import SpaceRecord, get_space

log = logging.getLogger(__name__)

PREFIX = "/console"
_env = jinja2.Environment(
    loader=jinja2.PackageLoader("perkamo.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_STATIC = {"console.css": "text/css", "console.js": "text/javascript",
           "htmx.min.js": "text/javascript"}  # fmt: skip


class Forbidden(Exception):
    """403: the operator may not do this (a viewer, a bad CSRF token, another origin)."""


class NotFound(Exception):
    pass


@dataclass
class Page:
    """What a view gets."""

    console: Console
    runtime: Runtime
    request: Request
    session: store.Session | None
    params: dict[str, str]
    query: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)
    space: SpaceRecord | None = None

    @property
    def operator(self) -> str:
        assert self.session is not None
        return self.session.email

    @property
    def admin(self) -> bool:
        return self.session is not None and self.session.role == "admin"

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        return self.console.render(self, template, status, **context)

    def redirect(self, path: str, **query: Any) -> Response:
        shown = {k: v for k, v in query.items() if v not in (None, "")}
        return redirect(PREFIX + path + (("?" + urlencode(shown)) if shown else ""))


View = Callable[[Page], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # e.g. "/spaces/{slug}/keys"
    view: View
    mutates: bool = False  # admin only, CSRF-checked
    anonymous: bool = False  # the login page
    regex: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        expression = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", re.escape(self.pattern).replace(
            r"\{", "{").replace(r"\}", "}"))  # fmt: skip
        object.__setattr__(self, "regex", re.compile(expression + r"\Z"))


def redirect(location: str) -> Response:
    response = Response("", status=303)
    response.headers["location"] = location
    return response


def url(path: str, **query: Any) -> str:
    """A console URL: path segments quoted, query encoded (templates use it)."""
    shown = {k: v for k, v in query.items() if v not in (None, "")}
    return PREFIX + path + (("?" + urlencode(shown)) if shown else "")


def seg(value: str) -> str:
    """One path segment, percent-encoded (a user id may hold any character)."""
    return quote(value, safe="")


_pretty_encoder = msgspec.json.Encoder(decimal_format="number")


def pretty(value: Any) -> str:
    """Any JSON value, indented (exact decimals; escaped by the template as text)."""
    return msgspec.json.format(_pretty_encoder.encode(value), indent=2).decode()


_env.globals.update(url=url, seg=seg)
_env.filters["pretty"] = pretty


class Console:
    def __init__(self, runtime: Runtime, routes: list[Route]) -> None:
        self.runtime = runtime
        self.routes = routes
        self.throttle = security.LoginThrottle()

    async def handle(self, request: Request) -> Response:
        try:
            response = await self._handle(request)
        except Forbidden as exc:
            response = self._error(request, 403, str(exc) or "You may not do that.")
        except NotFound as exc:
            response = self._error(request, 404, str(exc) or "Nothing here.")
        except Exception:
            log.exception("console error")
            response = self._error(request, 500, "Something went wrong on our side.")
        for name, value in security.HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _handle(self, request: Request) -> Response:
        # Routed on the raw path: a user id may hold "/" (percent-encoded in its segment).
        raw = (request.scope.get("raw_path") or b"/").decode("ascii", "replace")
        path = raw.split("?", 1)[0][len(PREFIX) :] or "/"
        if path.startswith("/static/"):
            return self._static(path.removeprefix("/static/"))
        route, params = self._match(request.method, path)
        session = await self._session(request)
        if not route.anonymous and session is None:
            if request.method == "GET":
                return redirect(url("/login", next=request.full_path.rstrip("?")))
            raise Forbidden("Your session has ended; log in again.")
        form: dict[str, str] = {}
        if request.method == "POST":
            self._check_origin(request)
            form = {k: v for k, v in (await request.form).items()}
            expected = session.csrf_token if session else request.cookies.get(_LOGIN_CSRF, "")
            given = form.get(security.CSRF_FIELD) or request.headers.get(security.CSRF_HEADER)
            if not expected or not security.csrf_matches(expected, given):
                raise Forbidden("The form expired or did not come from this console; retry.")
            if route.mutates and (session is None or session.role != "admin"):
                raise Forbidden("Viewers can look but not change anything.")
        page = Page(self, self.runtime, request, session, params, dict(request.args), form)
        if "slug" in params:
            page.space = await self.runtime.db.run(get_space, params["slug"])
            if page.space is None:
                raise NotFound(f"No Space {params['slug']!r}.")
        return await route.view(page)

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = False
        for route in self.routes:
            found = route.regex.match(path)
            if found is None:
                continue
            if route.method != method:
                allowed = True
                continue
            try:
                return route, {k: decode_segment(k, v) for k, v in found.groupdict().items()}
            except PerkamoError:  # not an identifier anything could have
                raise NotFound("That page does not exist.") from None
        raise NotFound("That page does not exist." if not allowed else "Use the page's form.")

    async def _session(self, request: Request) -> store.Session | None:
        token = request.cookies.get(security.SESSION_COOKIE)
        if not token or len(token) > 200:
            return None
        return await self.runtime.db.run(
            store.touch_session,
            security.session_hash(token),
            security.ABSOLUTE_LIFETIME,
            security.IDLE_LIFETIME,
        )

    @staticmethod
    def _check_origin(request: Request) -> None:
        if not security.same_origin(
            request.headers.get("origin"),
            request.headers.get("sec-fetch-site"),
            request.headers.get("host"),
        ):
            raise Forbidden("The request did not come from this console.")

    def render(self, page: Page | None, template: str, status: int, **context: Any) -> Response:
        session = page.session if page else None
        html = _env.get_template(template).render(
            session=session,
            admin=page.admin if page else False,
            space=page.space if page else None,
            csrf=session.csrf_token if session else "",
            **context,
        )
        return Response(html, status=status, content_type="text/html; charset=utf-8")

    def _error(self, request: Request, status: int, message: str) -> Response:
        html = _env.get_template("error.html").render(
            session=None, admin=False, space=None, csrf="", status=status, message=message
        )
        return Response(html, status=status, content_type="text/html; charset=utf-8")

    @staticmethod
    def _static(name: str) -> Response:
        if name not in _STATIC:
            raise NotFound()
        body = resources.files("perkamo.console").joinpath("static", name).read_bytes()
        response = Response(body, content_type=_STATIC[name])
        response.headers["cache-control"] = "public, max-age=3600"
        return response


_LOGIN_CSRF = "perkamo_console_login"


def error_message(exc: PerkamoError) -> str:
    """A use-case refusal as the console shows it, with the JSON paths it names."""
    paths = [f"{d['path']}: {d['message']}" for d in (exc.details or []) if d.get("path")]
    return str(exc) + (" — " + "; ".join(paths) if paths else "")


LOGIN_CSRF_COOKIE = _LOGIN_CSRF
