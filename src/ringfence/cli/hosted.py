"""Hosted-access commands: a hosted grant's quota and terms, a release's backend, usage.

Hosted grants themselves are made by `ringfence grants add REF --user EMAIL --mode hosted`.
"""

from __future__ import annotations

from typing import Any

import typer

from ringfence.access import grants
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue import services as catalogue
from ringfence.cli.context import services
from ringfence.cli.output import emit
from ringfence.db import transaction
from ringfence.errors import InvalidInput
from ringfence.hosted import quotas, usage
from ringfence.hosted import services as hosted

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
ACTOR = "cli"

hosted_app = typer.Typer(
    help="Hosted access: quotas, backends, usage of the inference endpoint.",
    no_args_is_help=True,
)


def _quota_row(grant_id: int, quota: Any) -> dict[str, Any]:
    return {
        "grant": grant_id,
        "requests_per_minute": quota.requests_per_minute,
        "tokens_per_minute": quota.tokens_per_minute,
        "tokens_per_day": quota.tokens_per_day,
        "parallel": quota.parallel,
        "max_tokens": quota.max_tokens,
        "keep_text": quota.keep_text,
    }


@hosted_app.command("quota")
def quota_cmd(
    grant_id: int = typer.Argument(..., help="The hosted grant's id (see `grants list`)."),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute."),
    tpm: int | None = typer.Option(None, "--tpm", help="Tokens per minute."),
    tpd: int | None = typer.Option(None, "--tpd", help="Tokens per day (UTC)."),
    parallel: int | None = typer.Option(None, "--parallel", help="Requests at once."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Most tokens per call."),
    keep_text: bool | None = typer.Option(
        None,
        "--keep-text/--hashes-only",
        help="Whether the grant's terms let the lab keep prompts and outputs.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show or change a hosted grant's quota and terms (no option: show)."""
    with transaction(services().sessions) as session:
        grant = grants.get_grant(session, grant_id)
        if grant.mode != "hosted":
            raise InvalidInput(
                f"grant {grant_id} is a download grant: quotas apply to hosted grants",
                hint="make it with `ringfence grants add REF --user EMAIL --mode hosted`",
            )
        changes = {
            "requests_per_minute": rpm,
            "tokens_per_minute": tpm,
            "tokens_per_day": tpd,
            "parallel": parallel,
            "max_tokens": max_tokens,
            "keep_text": keep_text,
        }
        if any(v is not None for v in changes.values()):
            quota = quotas.set_quota(session, grant, **changes)
            record(
                session,
                EventTag.Hosted.QuotaSet,
                actor=ACTOR,
                subject=f"release:{grant.release.ref}",
                user_id=grant.user_id,
                payload=_quota_row(grant.id, quota),
            )
        else:
            quota = quotas.quota_of(session, grant)
        row = _quota_row(grant.id, quota)
    emit(row, as_json=as_json)


@hosted_app.command("backend")
def backend_cmd(
    ref: str = typer.Argument(..., help="MODEL@VERSION"),
    upstream: str | None = typer.Option(
        None, "--upstream", help="An OpenAI-compatible engine's base URL (…/v1)."
    ),
    model: str = typer.Option("", "--model", help="The engine's id for the release."),
    key_env: str = typer.Option(
        "", "--key-env", help="The environment variable holding the engine's API key."
    ),
    embedded: bool = typer.Option(False, "--embedded", help="Back to the release's own weights."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Choose where a release's hosted generation runs: embedded (default) or upstream."""
    if embedded == (upstream is not None):
        raise InvalidInput("give exactly one of --embedded or --upstream URL")
    with transaction(services().sessions) as session:
        release = catalogue.get_release(session, ref)
        row = hosted.set_backend(
            session,
            release,
            kind="embedded" if embedded else "upstream",
            url=upstream or "",
            upstream_model=model,
            key_env=key_env,
            actor=ACTOR,
        )
        out = {
            "release": release.ref,
            "model_id": hosted.model_id(release),
            "backend": row.kind,
            "url": row.url,
            "upstream_model": row.upstream_model,
            "key_env": row.key_env,
        }
    emit(out, as_json=as_json)


@hosted_app.command("usage")
def usage_cmd(as_json: bool = JSON_OPTION) -> None:
    """Every hosted grant: tokens today, quota left, calls in the last minute."""
    with transaction(services().sessions) as session:
        rows = [
            {
                "grant": r.grant.id,
                "user": r.grant.user.email,
                "model": r.model,
                "state": r.grant.state,
                "tokens_today": r.usage.tokens_today,
                "tokens_left_today": max(r.usage.quota.tokens_per_day - r.usage.tokens_today, 0),
                "requests_last_minute": r.usage.requests_minute,
                "running": r.usage.running,
            }
            for r in usage.grant_usages(session, usage.hosted_grants(session))
        ]
    emit(rows, as_json=as_json, title="hosted grants")


def register(app: typer.Typer) -> None:
    """Add the hosted commands to the root app."""
    app.add_typer(hosted_app, name="hosted")
