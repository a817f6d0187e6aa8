"""Takedown notices: drafted from an incident's evidence, edited by a person, sent and recorded.

The draft names the release, the hashes of the files seen, the terms of the licence the
recipient accepted that the posting breaches, and the lab's contact. It is plain text (what
a hosting provider's abuse desk reads); `notice_html` renders the same text as a page.
"""

from __future__ import annotations

import re

from jinja2 import Environment, StrictUndefined
from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.db import utcnow
from ringfence.errors import InvalidInput
from ringfence.incidents.actions import check_text, record_action, require_open, subject_of
from ringfence.incidents.models import Incident, IncidentAction
from ringfence.mail.messages import Message
from ringfence.mail.services import queue
from ringfence.settings import Settings

MAX_NOTICE = 50_000
#: a licence clause as the shipped licences write them: "1. **Title.** text..."
_CLAUSE = re.compile(r"^\d+\.\s+\*\*(?P<title>[^*]+)\*\*(?P<body>.*?)(?=^\d+\.\s|\Z)", re.M | re.S)
_BREACHED = re.compile(r"redistribut|share|publish|upload|host|serve", re.I)
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

_TEMPLATE = """\
Subject: Takedown request: unauthorised copy of {{ release }}

To whom it may concern,

{{ lab }} is the author and licensor of the model release {{ release }}. A copy of its
weights, or a service running them, has been made available without authorisation at:

    {{ source }}

{% if files %}The files seen there are identified by these SHA-256 hashes:

{% for f in files %}    {{ f.sha256 }}  {{ f.name }}{% if f.size is not none %}
        ({{ f.size }} bytes){% endif %}
{% endfor %}
{% endif %}{% if traced %}Our forensic analysis of these files identifies them as a copy of
{{ release }} issued under licence to a named recipient ({{ traced }}).
{% endif %}{% if attributed %}Black-box testing of the service identifies it as serving
{{ release }} ({{ attributed }}).
{% endif %}
The release is distributed only under the licence {{ licence }}{% if licence_sha %}
(text SHA-256 {{ licence_sha }}){% endif %}, whose terms this publication breaches:

{% for clause in clauses %}    - {{ clause }}
{% else %}    - redistribution of the weights to anyone outside the licence
{% endfor %}
We ask you to remove or disable access to this material promptly, and to preserve any
records of who uploaded or operates it.

I state in good faith that this use is not authorised by the licensor, and that the
information in this notice is accurate.

Contact: {{ contact }}
{{ lab }}
Incident reference: ringfence incident {{ incident }}
"""

_env = Environment(
    autoescape=False,  # noqa: S701 - plain text; the HTML rendering escapes it
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


def breached_clauses(licence_text: str) -> list[str]:
    """The licence's clauses about redistribution, one line each ("Title. first sentence")."""
    out = []
    for match in _CLAUSE.finditer(licence_text):
        title, body = match.group("title").strip(), " ".join(match.group("body").split())
        if _BREACHED.search(title) or _BREACHED.search(body):
            first = re.split(r"(?<=\.)\s", body, maxsplit=1)[0]
            out.append(f"{title} {first}".strip())
    return out


def draft(session: Session, incident: Incident, settings: Settings, *, actor: str) -> str:
    """Draft the notice from the evidence, store it as the incident's notice, and record it."""
    require_open(incident)
    release = incident.release
    if release is None:
        raise InvalidInput(
            f"incident {incident.id} names no release yet",
            hint="trace a suspect file or attribute the endpoint first",
        )
    files = [
        f for e in incident.evidence if e.kind == "suspect" for f in e.payload.get("files", [])
    ]
    traced = [
        f"p-value {a['p_value']:.1e}" if a.get("score") is not None else "an exact copy"
        for e in incident.evidence
        if e.kind == "trace"
        for a in e.payload.get("accused", [])
    ]
    attributed = [
        f"p-value {e.payload.get('p_value', 0):.2g} over {e.payload.get('queries')} queries"
        for e in incident.evidence
        if e.kind == "attribution" and e.payload.get("verdict") == "ours"
    ]
    licence = release.licence
    organisation = release.model.organisation
    text = _env.from_string(_TEMPLATE).render(
        release=release.ref,
        lab=organisation.name,
        source=incident.source,
        files=files,
        traced="; ".join(traced),
        attributed="; ".join(attributed),
        licence=licence.ref if licence else "the lab's terms",
        licence_sha=licence.sha256 if licence else "",
        clauses=breached_clauses(licence.text) if licence else [],
        contact=settings.lab_contact or settings.mail_from,
        incident=incident.id,
    )
    incident.notice = text
    record(
        session,
        EventTag.Incident.NoticeDrafted,
        actor=actor,
        subject=subject_of(incident),
        payload={"chars": len(text)},
    )
    return text


def edit(
    session: Session, incident: Incident, text: str, *, actor: str, ip: str | None = None
) -> str:
    """Replace the notice's text with a person's edit (recorded with the text's length)."""
    require_open(incident)
    text = check_text(text, "notice", limit=MAX_NOTICE, required=True)
    incident.notice = text + "\n"
    record(
        session,
        EventTag.Incident.NoticeEdited,
        actor=actor,
        subject=subject_of(incident),
        ip=ip,
        payload={"chars": len(incident.notice)},
    )
    return incident.notice


def send(
    session: Session, incident: Incident, to: str, *, actor: str, ip: str | None = None
) -> IncidentAction:
    """Queue the notice to `to` (a provider's abuse address) and record that it was sent."""
    require_open(incident)
    to = to.strip()
    if not _ADDRESS.match(to) or len(to) > 320:
        raise InvalidInput(f"to: an e-mail address, not {to!r}")
    if not incident.notice.strip():
        raise InvalidInput("the notice is empty", hint="draft it first")
    subject, _, body = incident.notice.partition("\n")
    subject = (
        subject.removeprefix("Subject:").strip() or f"Takedown request (incident {incident.id})"
    )
    queue(session, to, Message("takedown_notice", subject, body.lstrip("\n")))
    incident.notice_sent_to, incident.notice_sent_at = to, utcnow()
    record(
        session,
        EventTag.Incident.NoticeSent,
        actor=actor,
        subject=subject_of(incident),
        ip=ip,
        payload={"to": to, "chars": len(incident.notice)},
    )
    return record_action(session, incident, "notice_sent", {"to": to}, actor=actor, ip=ip)


def notice_html(incident: Incident) -> str:
    """The notice as a standalone, printable HTML page (the text escaped, kept as written)."""
    title = escape(f"Takedown notice — incident {incident.id}")
    body = escape(incident.notice)
    return str(
        Markup(
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>{}</title>"
            "<style>body{{font:14px/1.5 serif;max-width:46em;margin:2em auto}}"
            "pre{{white-space:pre-wrap;font:inherit}}</style></head>"
            "<body><pre>{}</pre></body></html>\n"
        ).format(title, body)
    )
