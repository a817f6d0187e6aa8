"""Usage of hosted grants for people: tokens per day (as a chart), quota left, the last calls.

The chart is drawn here with matplotlib (Agg, no display) as a PNG the page embeds as a
`data:` image: no JavaScript, and nothing the page's Content-Security-Policy would block.
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ringfence.access.models import Grant
from ringfence.accounts.models import User
from ringfence.db import utcnow
from ringfence.hosted.models import HostedCall
from ringfence.hosted.quotas import Usage, usage
from ringfence.hosted.services import model_id

#: days the chart covers
DAYS = 14


@dataclass(frozen=True)
class GrantUsage:
    """One hosted grant as a usage page shows it."""

    grant: Grant
    model: str
    usage: Usage
    per_day: list[tuple[date, int]]


def hosted_grants(session: Session, user: User | None = None) -> list[Grant]:
    """Hosted grants, newest first: one person's, or everyone's (user None)."""
    query = (
        select(Grant)
        .options(selectinload(Grant.user), selectinload(Grant.release))
        .where(Grant.mode == "hosted")
        .order_by(Grant.id.desc())
    )
    if user is not None:
        query = query.where(Grant.user_id == user.id)
    return list(session.scalars(query))


def per_day(
    session: Session, grant_ids: list[int], days: int = DAYS
) -> dict[int, list[tuple[date, int]]]:
    """Tokens (prompt and completion) per UTC day for each grant, over the last `days` days."""
    today = utcnow().date()
    first = today - timedelta(days=days - 1)
    totals: dict[int, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    if grant_ids:
        rows = session.execute(
            select(
                HostedCall.grant_id,
                HostedCall.started_at,
                HostedCall.prompt_tokens + HostedCall.completion_tokens,
            ).where(
                HostedCall.grant_id.in_(grant_ids),
                HostedCall.started_at >= utcnow() - timedelta(days=days),
            )
        )
        for grant_id, started, tokens in rows:
            totals[grant_id][started.date()] += int(tokens or 0)
    span = [first + timedelta(days=i) for i in range(days)]
    return {g: [(d, totals[g].get(d, 0)) for d in span] for g in grant_ids}


def grant_usages(session: Session, grants: list[Grant]) -> list[GrantUsage]:
    """Each grant's quota use and daily tokens."""
    days = per_day(session, [g.id for g in grants])
    return [GrantUsage(g, model_id(g.release), usage(session, g), days[g.id]) for g in grants]


def last_calls(session: Session, grants: list[Grant], limit: int = 25) -> list[HostedCall]:
    """The latest calls under these grants, newest first."""
    if not grants:
        return []
    query = (
        select(HostedCall)
        .where(HostedCall.grant_id.in_([g.id for g in grants]))
        .order_by(HostedCall.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def chart_png(rows: list[GrantUsage]) -> str:
    """Tokens per day per grant as a PNG, base64 (for a `data:image/png` source)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3), dpi=96)
    axes = figure.subplots()
    for row in rows:
        axes.plot(
            [f"{d:%m-%d}" for d, _ in row.per_day],
            [n for _, n in row.per_day],
            marker="o",
            label=f"grant {row.grant.id} · {row.model}",
        )
    axes.set_ylabel("tokens per day")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    if rows:
        axes.legend(fontsize=8, loc="upper left")
    axes.tick_params(axis="x", labelrotation=45, labelsize=8)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return base64.b64encode(out.getvalue()).decode()
