"""Webhook subscriptions, signing (Standard Webhooks) and delivery from the durable queue.

A message is signed exactly as the Standard Webhooks specification says (the
`standardwebhooks` library does it): `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed by the
subscription's `whsec_` secret. `deliver_due(services, now)` sends what is due and reschedules
failures with exponential backoff; it is a plain function so a job queue, the server's
background thread or `ringfence webhooks deliver` can all run it.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlparse

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from ringfence.accounts.models import User
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Release
from ringfence.db import transaction
from ringfence.errors import InvalidInput, NotFound, PermissionDenied
from ringfence.secrets import SecretStore
from ringfence.webhooks.events import ALL_TYPES, OUTSIDE_TYPES
from ringfence.webhooks.models import Delivery, Subscription
from ringfence.wiring import Services

log = logging.getLogger("ringfence.webhooks")

#: attempts per message before it is marked failed (and left for a person to redeliver)
MAX_ATTEMPTS = 8
#: the wait after the first failure; it doubles each time (30 s, 1 min, 2 min ... 64 min)
FIRST_BACKOFF = timedelta(seconds=30)
#: how long a claimed message is kept from other workers while one sends it
CLAIM = timedelta(minutes=5)
#: messages sent per call
BATCH = 100


def secret(secrets: SecretStore, subscription_id: int) -> str:
    """The subscription's signing secret, `whsec_` + base64 (derived, never stored)."""
    key = secrets.derive(f"webhooks:subscription:{subscription_id}")
    return "whsec_" + base64.b64encode(key).decode()


def sign(secret_value: str, message_id: str, at: datetime, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt at `at`."""
    signature = Webhook(secret_value).sign(msg_id=message_id, timestamp=at, data=body)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure: doubling from FIRST_BACKOFF."""
    return FIRST_BACKOFF * int(2 ** max(attempts - 1, 0))


def _check_url(url: str, *, outside: bool, allow_insecure: bool) -> str:
    url = url.strip()
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or len(url) > 500:
        raise InvalidInput(f"url: {url[:80]!r} is not an http(s) URL")
    if outside and not allow_insecure:
        # Someone outside the lab names where the server connects: https only, and never an
        # address inside the lab's network (the server must not become their probe).
        if parsed.scheme != "https":
            raise InvalidInput("url: webhooks outside the lab must use https")
        try:
            address = ipaddress.ip_address(parsed.hostname)
        except ValueError:
            address = None
        if address is not None and not address.is_global:
            raise InvalidInput("url: webhooks may not point into a private network")
    return url


def subscribe(
    services: Services,
    session: Session,
    owner: User,
    url: str,
    events: list[str],
    *,
    release: Release | None = None,
) -> Subscription:
    """Add a subscription; the lab's admins may watch anything, others their releases' fate."""
    outside = owner.role != "admin"
    wanted = sorted(set(events)) or list(OUTSIDE_TYPES if outside else ALL_TYPES)
    unknown = [e for e in wanted if e not in ALL_TYPES]
    if unknown:
        raise InvalidInput(
            f"events: {', '.join(unknown)} unknown", hint=f"use {', '.join(ALL_TYPES)}"
        )
    if outside:
        if release is None:
            raise PermissionDenied("only the lab's admins may watch every release")
        if any(e not in OUTSIDE_TYPES for e in wanted):
            raise PermissionDenied(f"outside the lab, one may watch {', '.join(OUTSIDE_TYPES)}")
    checked = _check_url(
        url, outside=outside, allow_insecure=services.settings.webhooks_allow_insecure
    )
    subscription = Subscription(
        owner_id=owner.id, release_id=release.id if release else None, url=checked, events=wanted
    )
    session.add(subscription)
    session.flush()
    record(
        session,
        EventTag.Webhooks.SubscriptionAdded,
        actor=owner.email,
        subject=f"webhook:{subscription.id}",
        payload={
            "url": checked,
            "events": wanted,
            "release": release.ref if release else None,
        },
        user_id=owner.id,
    )
    return subscription


def subscriptions(session: Session, owner: User | None = None) -> list[Subscription]:
    """Subscriptions, newest first (one owner's when given)."""
    query = select(Subscription).order_by(Subscription.id.desc())
    if owner is not None:
        query = query.where(Subscription.owner_id == owner.id)
    return list(session.scalars(query))


def deliveries(session: Session, *, limit: int = 100) -> list[Delivery]:
    """The delivery log, newest first."""
    return list(session.scalars(select(Delivery).order_by(Delivery.id.desc()).limit(limit)))


def redeliver(session: Session, delivery_id: str, *, actor: str) -> Delivery:
    """Send a message again now (whatever became of it), keeping its webhook-id."""
    if not delivery_id.strip().isdigit():
        raise InvalidInput("delivery: give the number of a delivery")
    delivery = session.get(Delivery, int(delivery_id))
    if delivery is None:
        raise NotFound(f"no delivery {delivery_id}")
    delivery.state, delivery.attempts = "pending", 0
    delivery.next_attempt_at = delivery.created_at  # due at once, by any clock
    record(
        session,
        EventTag.Webhooks.RedeliveryRequested,
        actor=actor,
        subject=f"webhook:{delivery.subscription_id}",
        payload={"delivery": delivery.id, "message_id": delivery.message_id},
    )
    return delivery


@dataclass(frozen=True)
class _Due:
    id: int
    subscription_id: int
    url: str
    message_id: str
    body: str
    attempts: int


def _claim(session: Session, now: datetime) -> list[_Due]:
    rows = session.execute(
        select(Delivery, Subscription.url)
        .join(Subscription)
        .where(
            Delivery.state == "pending",
            Delivery.next_attempt_at <= now,
            Subscription.active.is_(True),
        )
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(BATCH)
    ).all()
    due: list[_Due] = []
    for delivery, url in rows:
        # Claimed only when nobody moved it since we read it: two workers never both send it.
        claimed = session.execute(
            update(Delivery)
            .where(Delivery.id == delivery.id, Delivery.next_attempt_at == delivery.next_attempt_at)
            .values(next_attempt_at=now + CLAIM)
        ).rowcount  # type: ignore[attr-defined]
        if claimed:
            due.append(
                _Due(
                    delivery.id,
                    delivery.subscription_id,
                    url,
                    delivery.message_id,
                    delivery.body,
                    delivery.attempts,
                )
            )
    return due


def _send(
    client: httpx.Client, secrets: SecretStore, due: _Due, now: datetime
) -> tuple[int | None, str]:
    headers = sign(secret(secrets, due.subscription_id), due.message_id, now, due.body)
    try:
        response = client.post(due.url, content=due.body.encode(), headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    return response.status_code, f"the receiver answered {response.status_code}"


def deliver_due(services: Services, now: datetime | None = None) -> int:
    """Send every message due at `now` (default: the services' clock); how many landed."""
    now = now or services.clock()
    with transaction(services.sessions) as session:
        due = _claim(session, now)
    if not due:
        return 0
    delivered = 0
    # No redirects: a receiver must not bounce the signed body somewhere else.
    with httpx.Client(timeout=10.0, follow_redirects=False) as client:
        for item in due:
            status, error = _send(client, services.secrets, item, now)
            with transaction(services.sessions) as session:
                delivery = session.get(Delivery, item.id)
                if delivery is None:
                    continue
                delivery.attempts = item.attempts + 1
                delivery.last_status, delivery.last_error = status, error
                if not error:
                    delivery.state, delivery.delivered_at = "delivered", now
                    delivered += 1
                elif delivery.attempts >= MAX_ATTEMPTS:
                    delivery.state = "failed"
                    record(
                        session,
                        EventTag.Webhooks.DeliveryFailed,
                        actor="webhooks",
                        subject=f"webhook:{item.subscription_id}",
                        payload={
                            "delivery": item.id,
                            "attempts": delivery.attempts,
                            "error": error,
                        },
                    )
                else:
                    delivery.next_attempt_at = now + backoff(delivery.attempts)
                    log.info("webhook %s failed (%s); retrying later", item.message_id, error)
    return delivered
