"""``GET /v1/program`` and ``GET /v1/usage``: the Space's blueprint, integration status,
metrics and usage meters."""

from __future__ import annotations

from decimal import Decimal

from perkamo.http.responses import (
    Integration,
    Meter,
    Period,
    ProgramDocument,
    ProgramMetrics,
    SpaceRef,
    UsageResponse,
    WebhookStatus,
)
from perkamo.profiles.usage import Meters
from perkamo.program import Program
from perkamo.program.amounts import number
from perkamo.program.json_walk import JsonObject
from perkamo.program.timefmt import format_rfc3339
from storage.spaces import KeyRecord
from storage.stats import SpaceStats, WebhookHealth


def usage_document(tenant: str, meters: Meters) -> UsageResponse:
    return UsageResponse(
        tenant=tenant,
        period=Period(format_rfc3339(meters.start), format_rfc3339(meters.end)),
        meters={name: Meter(used, meters.limits.get(name)) for name, used in meters.used.items()},
    )


def blueprint(program: Program) -> JsonObject:
    """The active modules as configured (the PHP SDK reads ``earningRules[*].event``)."""
    bodies = program.bodies
    events = bodies.get("events", {})
    wallets = bodies.get("wallets", {})
    rule_extras = ("conditions", "limits", "active_from", "active_until")
    return {
        "earningRules": [
            {
                "key": r["key"],
                "event": r["event"],
                "name": r["name"],
                "award": r["award"],
                **{k: r[k] for k in rule_extras if k in r},
            }
            for r in events.get("rules", [])
        ],
        "events": [
            {"key": key, "name": name, "description": description}
            for key, name, description in program.catalog
        ],
        "wallets": wallets.get("wallets", []),
        "rewards": wallets.get("rewards", []),
        "levels": bodies.get("leveling") or None,
        "perks": bodies.get("perks", {}).get("perks", []),
        "achievements": bodies.get("achievements", {}).get("achievements", []),
        "streaks": events.get("streaks", []),
        "boosts": bodies.get("boosts", {}).get("boosts", []),
    }


def program_document(
    key: KeyRecord, program: Program, stats: SpaceStats, usage: UsageResponse, meters: Meters
) -> ProgramDocument:
    precisions = {w.key: w.precision for w in program.wallets}

    def amounts(totals: dict[str, Decimal]) -> dict[str, Decimal]:
        return {
            w: number(Decimal(totals.get(w, 0)), precisions.get(w, 6))
            for w in sorted(set(totals) | set(precisions))
        }

    last = stats.last_event_at
    return ProgramDocument(
        tenant=key.space_slug,
        space=SpaceRef(key.space_slug, key.space_name, key.space_environment),
        blueprint=blueprint(program),
        versions=program.versions,
        integration=Integration(
            keys_in_use=stats.keys_in_use,
            last_event_at=format_rfc3339(last) if last else None,
            events_last_24h=stats.events_last_24h,
            signed_request_share=meters.signed_share,
            webhook=_webhook(stats.webhook),
        ),
        metrics=ProgramMetrics(
            profiles=stats.profiles,
            events=stats.events,
            redemptions=stats.redemptions,
            adjustments=stats.adjustments,
            reversals=stats.reversals,
            issued=amounts(stats.issued),
            spent=amounts(stats.spent),
        ),
        usage=usage,
    )


def _webhook(endpoint: WebhookHealth | None) -> WebhookStatus:
    if endpoint is None:
        return WebhookStatus("not_configured")
    last = endpoint.last_delivered_at
    return WebhookStatus(
        status="active" if endpoint.enabled else "disabled",
        url=endpoint.url,
        queued=endpoint.queued,
        failed_last_24h=endpoint.failed_last_24h,
        last_delivered_at=format_rfc3339(last) if last else None,
    )
