"""The one error hierarchy: every error code the API answers is one member of :class:`Code`,
with its HTTP status and a default user-safe message — the table of docs/api.md (errors) (a test
checks that they are equal). Code raises ``PerkamoError(Code.X, "message")``;
``perkamo.http.errors`` turns an error into a response in one place, and the OpenAPI document lists
the codes of each status from here."""

from __future__ import annotations

from enum import Enum


class Code(Enum):
    """``value`` is the stable snake_case code of the wire."""

    status: int
    message: str

    def __new__(cls, wire: str, status: int, message: str) -> Code:
        member = object.__new__(cls)
        member._value_ = wire
        member.status = status
        member.message = message
        return member

    # 400
    INVALID_JSON = ("invalid_json", 400, "The request body is not valid JSON.")
    VALIDATION_ERROR = ("validation_error", 400, "The request is invalid.")
    RESERVED_CONTEXT_KEY = ("reserved_context_key", 400, "The context uses a reserved key.")
    OCCURRED_AT_IN_FUTURE = (
        "occurred_at_in_future", 400, "occurred_at is more than 5 minutes in the future."
    )  # fmt: skip
    BATCH_TOO_LARGE = ("batch_too_large", 400, "A batch holds at most 100 events.")
    BATCH_EMPTY = ("batch_empty", 400, "A batch needs at least one event.")
    IDEMPOTENCY_CONFLICT = (
        "idempotency_conflict", 400, "The transaction_id was already used for another payload."
    )  # fmt: skip
    INSUFFICIENT_BALANCE = ("insufficient_balance", 400, "The balance is too low.")
    REQUIREMENTS_NOT_MET = ("requirements_not_met", 400, "The reward's requirements are unmet.")
    REDEMPTION_LIMIT_REACHED = (
        "redemption_limit_reached", 400, "The reward's redemption limit is reached."
    )  # fmt: skip
    UNKNOWN_REWARD = ("unknown_reward", 400, "There is no such active reward.")
    INVALID_CONFIG = ("invalid_config", 400, "The configuration is invalid.")
    VERSION_CONFLICT = ("version_conflict", 400, "That version exists with a different body.")
    INVALID_BROWSER_KEY = (
        "invalid_browser_key", 400, "The browser key is unknown, revoked or not allowed this."
    )  # fmt: skip
    # 401
    MISSING_API_KEY = (
        "missing_api_key", 401, "Send your secret API key in the x-perkamo-api-key header."
    )  # fmt: skip
    INVALID_API_KEY = ("invalid_api_key", 401, "The API key is unknown or revoked.")
    INVALID_SIGNATURE = ("invalid_signature", 401, "The request signature is invalid.")
    SIGNATURE_REQUIRED = ("signature_required", 401, "This Space requires signed requests.")
    INVALID_TOKEN = ("invalid_token", 401, "The browser token is invalid or expired.")
    # 403
    INSUFFICIENT_SCOPE = ("insufficient_scope", 403, "The API key lacks the scope.")
    TENANT_MISMATCH = (
        "tenant_mismatch", 403, "The Space named in the request does not match the API key's."
    )  # fmt: skip
    ORIGIN_NOT_ALLOWED = (
        "origin_not_allowed", 403, "This origin is not allowed by the browser key."
    )  # fmt: skip
    EVENT_NOT_ALLOWED = ("event_not_allowed", 403, "A browser may not send this event.")
    WRONG_TOKEN_PURPOSE = (
        "wrong_token_purpose", 403, "This token was minted for another purpose."
    )  # fmt: skip
    USER_MISMATCH = ("user_mismatch", 403, "The user_id is not the token's customer.")
    # 404
    NOT_FOUND = ("not_found", 404, "No such endpoint.")
    PROFILE_NOT_FOUND = ("profile_not_found", 404, "No such profile.")
    UNKNOWN_MODULE = ("unknown_module", 404, "No such configuration module.")
    UNKNOWN_VERSION = ("unknown_version", 404, "No such configuration version.")
    BACKTEST_NOT_FOUND = ("backtest_not_found", 404, "No such back-test.")
    REDEMPTION_NOT_FOUND = ("redemption_not_found", 404, "No such redemption.")
    EVENT_NOT_FOUND = ("event_not_found", 404, "No such event.")
    # 405, 408, 409
    METHOD_NOT_ALLOWED = ("method_not_allowed", 405, "That method is not allowed here.")
    REQUEST_TIMEOUT = ("request_timeout", 408, "The request did not arrive in time.")
    BACKTEST_RUNNING = ("backtest_running", 409, "A back-test is already running.")
    # 413, 415, 429, 431
    PAYLOAD_TOO_LARGE = ("payload_too_large", 413, "The request body is larger than 1 MiB.")
    UNSUPPORTED_MEDIA_TYPE = (
        "unsupported_media_type", 415, "Send the body as JSON (content-type: application/json)."
    )  # fmt: skip
    RATE_LIMITED = ("rate_limited", 429, "Too many requests for this API key; slow down.")
    USAGE_LIMIT_EXCEEDED = ("usage_limit_exceeded", 429, "The Space's usage limit is reached.")
    HEADERS_TOO_LARGE = (
        "headers_too_large", 431, "The request line and headers are larger than 16 KiB."
    )  # fmt: skip
    # 500, 501, 505
    INTERNAL_ERROR = ("internal_error", 500, "Something went wrong on our side; retry shortly.")
    NOT_SUPPORTED = ("not_supported", 501, "Only the chunked transfer coding is supported.")
    HTTP_VERSION_NOT_SUPPORTED = (
        "http_version_not_supported", 505, "Only HTTP/1.1 (HTTP/1.0) and HTTP/2 are supported."
    )  # fmt: skip
    # 503
    OVERLOADED = ("overloaded", 503, "The server is overloaded; retry shortly.")
    SHUTTING_DOWN = ("shutting_down", 503, "The server is shutting down; retry.")
    SPACE_FROZEN = (
        "space_frozen",
        503,
        "This Space is frozen while it moves; writes resume when it is unfrozen. Retry with "
        "the same transaction_id.",
    )
    STORAGE_UNAVAILABLE = (
        "storage_unavailable", 503, "Storage is unavailable; retry with the same transaction_id."
    )  # fmt: skip
    OUTCOME_UNKNOWN = (
        "outcome_unknown",
        503,
        "The request may or may not have been applied; retry with the same transaction_id.",
    )


RETRY_STATUSES = frozenset({429, 503})  # answers that always carry retry-after


class PerkamoError(Exception):
    """An error the API answers. ``message`` defaults to the code's. ``retry_after``
    (seconds) is a fact about the refusal — when to try again; the edge turns it into the
    ``retry-after`` header every 429 and 503 carries (1 s when not given). ``allow``: the
    methods a path takes (405)."""

    def __init__(
        self,
        code: Code,
        message: str | None = None,
        *,
        details: list[dict[str, str]] | None = None,
        retry_after: int | None = None,
        allow: str | None = None,
    ) -> None:
        self.code = code
        self.message = message or code.message
        super().__init__(self.message)
        self.details = details
        self.retry_after = retry_after
        self.allow = allow

    @property
    def status(self) -> int:
        return self.code.status

    @property
    def headers(self) -> dict[str, str]:
        """The response headers this refusal implies."""
        headers = {} if self.allow is None else {"allow": self.allow}
        if self.code.status in RETRY_STATUSES:
            headers["retry-after"] = str(self.retry_after or 1)
        return headers


# A frozen Space (perkamo spaces freeze) is moving: a move takes minutes, not seconds.
FROZEN_RETRY_SECONDS = 30


def space_frozen() -> PerkamoError:
    """503 space_frozen: the Space's writes are refused while it is frozen (docs/api.md
    (moving a Space))."""
    return PerkamoError(Code.SPACE_FROZEN, retry_after=FROZEN_RETRY_SECONDS)


def validation_failed(path: str, message: str) -> PerkamoError:
    """400 validation_error pointing at one JSON path."""
    text = f"Invalid request: {path}: {message}" if path else f"Invalid request: {message}"
    return PerkamoError(Code.VALIDATION_ERROR, text, details=[{"path": path, "message": message}])


def codes_by_status() -> dict[int, list[str]]:
    """Every code, by HTTP status, in registry order (for the OpenAPI document)."""
    table: dict[int, list[str]] = {}
    for code in Code:
        table.setdefault(code.status, []).append(code.value)
    return table
