"""What ringfence writes to people: one function per kind of mail, returning its context.

The texts live in `templates/<kind>/subject.txt` and `body.txt`, so wording changes in one
place and reads as the person sees it. A function here only names what the text may use:

    message = messages.request_rejected(release="tiny@1.0", reason="...", may_appeal=True,
                                        base_url="https://models.example")
    mail.queue(session, "ada@uni.example", message)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec

from jinja2 import Environment, PackageLoader, StrictUndefined

P = ParamSpec("P")


@dataclass(frozen=True)
class Message:
    """A rendered mail: its kind (the template folder), subject line and plain-text body."""

    kind: str
    subject: str
    body: str


# Plain text, not HTML: nothing is escaped, and a missing variable is an error, not a blank.
_env = Environment(
    loader=PackageLoader("ringfence.mail", "templates"),
    autoescape=False,  # noqa: S701 - plain-text mail, never rendered as HTML
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


def render(kind: str, context: dict[str, Any]) -> Message:
    """The mail of `kind` with `context` filled in."""
    subject = _env.get_template(f"{kind}/subject.txt").render(context).strip()
    body = _env.get_template(f"{kind}/body.txt").render(context)
    return Message(kind, " ".join(subject.split())[:200], body)


def _message(kind: str) -> Callable[[Callable[P, dict[str, Any]]], Callable[P, Message]]:
    def decorate(context: Callable[P, dict[str, Any]]) -> Callable[P, Message]:
        @functools.wraps(context)
        def build(*args: P.args, **kwargs: P.kwargs) -> Message:
            return render(kind, context(*args, **kwargs))

        return build

    return decorate


@_message("account-created")
def account_created(*, address: str, link: str) -> dict[str, Any]:
    """An admin made an account; the link sets its password."""
    return {"address": address, "link": link}


@_message("sign-up-repeated")
def sign_up_repeated(*, base_url: str) -> dict[str, Any]:
    """Someone signed up with an address that already has an account."""
    return {"base_url": base_url}


@_message("verify-email")
def verify_email(*, address: str, link: str) -> dict[str, Any]:
    """A new account's address is to be confirmed."""
    return {"address": address, "link": link}


@_message("password-reset")
def password_reset(*, link: str) -> dict[str, Any]:
    """The owner asked to choose a new password."""
    return {"link": link}


@_message("password-set-by-operator")
def password_set_by_operator(*, address: str) -> dict[str, Any]:
    """An operator set the account's password; its credentials ended."""
    return {"address": address}


@_message("two-factor-on")
def two_factor_on(*, base_url: str) -> dict[str, Any]:
    """Two-factor sign-in was turned on."""
    return {"base_url": base_url}


@_message("two-factor-off")
def two_factor_off() -> dict[str, Any]:
    """The owner turned two-factor sign-in off."""
    return {}


@_message("two-factor-reset")
def two_factor_reset(*, reason: str) -> dict[str, Any]:
    """An admin turned two-factor sign-in off for the owner."""
    return {"reason": reason}


@_message("recovery-code-used")
def recovery_code_used(*, left: int) -> dict[str, Any]:
    """A recovery code stood in for the authenticator."""
    return {"left": left}


@_message("recovery-codes-renewed")
def recovery_codes_renewed() -> dict[str, Any]:
    """New recovery codes replaced the old ones."""
    return {}


@_message("request-received")
def request_received(*, release: str, base_url: str) -> dict[str, Any]:
    """A request waits for a reviewer."""
    return {"release": release, "base_url": base_url}


@_message("request-approved")
def request_approved(*, release: str, licence: str | None, release_url: str) -> dict[str, Any]:
    """A request was approved (the licence, if any, is still to accept)."""
    return {"release": release, "licence": licence, "release_url": release_url}


@_message("request-rejected")
def request_rejected(
    *, release: str, reason: str, may_appeal: bool, base_url: str
) -> dict[str, Any]:
    """A request was rejected; the first rejection may be appealed."""
    return {"release": release, "reason": reason, "may_appeal": may_appeal, "base_url": base_url}


@_message("request-expired")
def request_expired(*, release: str, days: int, release_url: str) -> dict[str, Any]:
    """A pending request outlived the request lifetime."""
    return {"release": release, "days": days, "release_url": release_url}


@_message("access-revoked")
def access_revoked(*, release: str, reason: str, narrowed: bool = False) -> dict[str, Any]:
    """A grant was revoked, one at a time or by narrowing the release's circle."""
    return {"release": release, "reason": reason.rstrip("."), "narrowed": narrowed}


@_message("grant-expired")
def grant_expired(*, release: str, release_url: str) -> dict[str, Any]:
    """A grant reached its expiry date."""
    return {"release": release, "release_url": release_url}


@_message("licence-changed")
def licence_changed(*, release: str, title: str, licence: str, release_url: str) -> dict[str, Any]:
    """A release names a new licence; holders accept it before downloading again."""
    return {"release": release, "title": title, "licence": licence, "release_url": release_url}


@_message("base-narrowed")
def base_narrowed(
    *,
    base: str,
    derivative: str,
    before: str,
    circle: str,
    reason: str,
    capped: bool,
) -> dict[str, Any]:
    """A derivative's base release was narrowed; a hosted derivative was capped with it."""
    return {
        "base": base,
        "derivative": derivative,
        "before": before,
        "circle": circle,
        "reason": reason.rstrip("."),
        "capped": capped,
    }


@_message("schedule-step")
def schedule_step(
    *, release: str, circle: str, due: str, taken: bool, reason: str, base_url: str
) -> dict[str, Any]:
    """A planned widening happened, or was held (to the lab's admins)."""
    return {
        "release": release,
        "circle": circle,
        "due": due,
        "taken": taken,
        "reason": reason.rstrip("."),
        "base_url": base_url,
    }


@_message("requests-waiting")
def requests_waiting(
    *, count: int, releases: list[tuple[str, int]], digest: bool, base_url: str
) -> dict[str, Any]:
    """New requests wait for a reviewer (soon after they arrive, or as a daily digest)."""
    return {"count": count, "releases": releases, "digest": digest, "base_url": base_url}


@_message("base-licence-changed")
def base_licence_changed(
    *, base: str, derivative: str, licence: str, before: str | None
) -> dict[str, Any]:
    """A derivative's base release names a new licence."""
    return {"base": base, "derivative": derivative, "licence": licence, "before": before}
