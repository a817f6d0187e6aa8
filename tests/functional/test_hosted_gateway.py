"""Hosted-only access through the real `openai` client against a live server.

One world per database: a tiny random Llama (the demo model's tokenizer and chat template)
published as `lab/tiny-llm@1.0`, a partner with a hosted grant and a download token, a
researcher with a download grant, served by uvicorn on loopback. A second ringfence server
(`ringfence serve`, its own process, data dir and database) serves the same model; the
first reaches it as an upstream backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import select

from ringfence.access.grants import issue_grant, revoke_grant
from ringfence.access.licences import install_research_licence
from ringfence.access.models import Grant, LicenceAcceptance
from ringfence.accounts.models import User
from ringfence.accounts.services import start_session
from ringfence.accounts.tokens import create_token
from ringfence.audit.models import AuditEvent
from ringfence.catalogue import services as catalogue
from ringfence.db import transaction, utcnow
from ringfence.hosted.models import HostedCall
from ringfence.hosted.quotas import quota_of, set_quota
from ringfence.hosted.services import set_backend
from ringfence.settings import Settings
from ringfence.web.app import create_app
from ringfence.wiring import Services, build
from tests.conftest import TINY_CODE
from tests.fixtures_access import make_user
from tests.fixtures_hosted import ringfence_process, write_tiny_llm
from tests.live import serve

pytestmark = pytest.mark.shared_database

MODEL = "lab/tiny-llm@1.0"
UPSTREAM_MODEL = "lab/tiny-relay@1.0"


@dataclass
class Server:
    """A live ringfence server and what the tests call it with."""

    services: Services
    url: str
    tokens: dict[str, str]

    def client(self, who: str, **kwargs: object) -> openai.OpenAI:
        """The real openai client as `who`, retries off (a 429 is what some tests want)."""
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=self.tokens[who], max_retries=0, **kwargs
        )

    def grant(self, email: str, ref: str = "tiny-llm@1.0") -> Grant:
        with self.services.sessions() as session:
            release = catalogue.get_release(session, ref)
            user = session.scalars(select(User).where(User.email == email)).one()
            grant = session.scalars(
                select(Grant).where(Grant.user_id == user.id, Grant.release_id == release.id)
            ).one()
            session.expunge(grant)
            return grant


def _world(home: Path, database_url: str | None, model_dir: Path, *, relay: bool) -> Services:
    services = build(
        # Mail stays queued: no SMTP server here (the access flows test mail for real).
        Settings(home=home, database_url=database_url, hosted_threads=1, mail_backend="none")  # type: ignore[call-arg]
    )
    services.prepare()
    with transaction(services.sessions) as session:
        catalogue.init_organisation(session, "lab")
        licence = install_research_licence(session, actor="test")
        names = ("tiny-llm", "tiny-relay") if relay else ("tiny-llm",)
        for name in names:
            release = catalogue.publish(
                session,
                services.blobs,
                model_dir,
                model=name,
                version="1.0",
                fingerprint=TINY_CODE,
            )
            release.circle, release.licence = "research", licence
        session.flush()
        people = {
            "partner": "hosted",
            "other": "hosted",
            "quota": "hosted",
            "cut": "hosted",
            "researcher": "download",
        }
        for key, mode in people.items():
            user = make_user(session, f"{key}@hosted.example")
            for name in names:
                release = catalogue.get_release(session, f"{name}@1.0")
                issue_grant(session, user, release, via="direct", granted_by="test", mode=mode)
                session.add(
                    LicenceAcceptance(
                        user_id=user.id,
                        release_id=release.id,
                        licence_id=licence.id,
                        licence_ref=licence.ref,
                        text_sha256=licence.sha256,
                    )
                )
    return services


def _tokens(services: Services) -> dict[str, str]:
    tokens = {}
    with transaction(services.sessions) as session:
        for user in session.scalars(select(User)):
            key = user.email.split("@")[0]
            tokens[key] = create_token(session, user, "download", actor="test").raw
            tokens[f"{key}/read"] = create_token(session, user, "read", actor="test").raw
    return tokens


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture(scope="module")
def upstream(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, backend: str
) -> Iterator[Server]:
    """The second ringfence, a process of its own (`ringfence serve`): its own SQLite data
    dir, the same model, a relay partner whose token the first server's backend uses."""
    home = tmp_path_factory.mktemp("hosted-upstream")
    services = _world(home, None, model_dir, relay=False)
    tokens = _tokens(services)
    services.engine.dispose()
    with ringfence_process(home, RINGFENCE_HOSTED_THREADS="1") as url:
        yield Server(services, url, tokens)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    module_database_url: str | None,
    model_dir: Path,
    upstream: Server,
) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("hosted")
    services = _world(home, module_database_url, model_dir, relay=True)
    with transaction(services.sessions) as session:
        set_backend(
            session,
            catalogue.get_release(session, "tiny-relay@1.0"),
            kind="upstream",
            url=f"{upstream.url}/v1",
            upstream_model=MODEL,
            key_env="RINGFENCE_TEST_UPSTREAM_KEY",
            actor="test",
        )
    tokens = _tokens(services)
    mp = pytest.MonkeyPatch()
    mp.setenv("RINGFENCE_TEST_UPSTREAM_KEY", upstream.tokens["partner"])
    with serve(create_app(services)) as url:
        yield Server(services, url, tokens)
    mp.undo()


# --- the endpoint through the openai client ---------------------------------------------------


def test_models_lists_the_hosted_grants_only(server: Server) -> None:
    """/v1/models: the partner's hosted releases; nothing for a download grant's holder."""
    ids = sorted(m.id for m in server.client("partner").models.list())
    assert ids == [MODEL, UPSTREAM_MODEL]
    assert server.client("partner").models.retrieve(MODEL).id == MODEL
    assert list(server.client("researcher").models.list()) == []


def test_completion_with_logprobs(server: Server) -> None:
    """A text completion with the chosen tokens' log-probabilities and the two best ones."""
    r = server.client("partner").completions.create(
        model=MODEL, prompt="The weather today is", max_tokens=4, temperature=0, logprobs=2
    )
    choice = r.choices[0]
    assert r.model == MODEL and r.object == "text_completion"
    assert r.usage is not None and r.usage.completion_tokens == 4
    assert choice.logprobs is not None and choice.logprobs.tokens is not None
    assert "".join(choice.logprobs.tokens) == choice.text
    assert all(lp <= 0 for lp in choice.logprobs.token_logprobs or [])
    assert all(len(top) == 2 for top in choice.logprobs.top_logprobs or [])
    assert choice.finish_reason == "length"


def test_chat_with_top_logprobs(server: Server) -> None:
    """A chat answer through the chat template, with top log-probabilities per token."""
    r = server.client("partner").chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=3,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert r.usage is not None and r.usage.prompt_tokens > 5
    assert choice.logprobs is not None and choice.logprobs.content
    assert all(len(t.top_logprobs) == 3 for t in choice.logprobs.content)
    assert "".join(t.token for t in choice.logprobs.content) == choice.message.content


def test_chat_streams_with_usage_last(server: Server) -> None:
    """Server-sent events: role first, text pieces, the finish, usage in a last chunk."""
    stream = server.client("partner").chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count."}],
        max_tokens=5,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    whole = server.client("partner").chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Count."}], max_tokens=5, temperature=0
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content


def test_completion_streams_and_ends_with_done(server: Server) -> None:
    """The raw stream: `data:` lines ending in `data: [DONE]`, rate-limit headers on it."""
    with httpx.stream(
        "POST",
        f"{server.url}/v1/completions",
        headers={"Authorization": f"Bearer {server.tokens['partner']}"},
        json={"model": MODEL, "prompt": "Once", "max_tokens": 3, "stream": True},
        timeout=60,
    ) as r:
        assert r.status_code == 200, r.read()
        assert "x-ratelimit-remaining-requests" in r.headers
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


def test_upstream_backend_relays_to_a_second_ringfence(server: Server, upstream: Server) -> None:
    """A release served by another OpenAI-compatible engine: here a second ringfence's own
    gateway, reached with the lab's key; both servers log the call."""
    with upstream.services.sessions() as session:
        before = session.query(HostedCall).count()
    client = server.client("partner")
    r = client.chat.completions.create(
        model=UPSTREAM_MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=3,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    direct = upstream.client("partner").chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=3,
        temperature=0,
    )
    assert r.model == UPSTREAM_MODEL
    assert r.choices[0].message.content == direct.choices[0].message.content
    assert r.choices[0].logprobs is not None and r.choices[0].logprobs.content
    assert r.usage is not None and r.usage.completion_tokens == 3
    chunks = list(
        client.completions.create(model=UPSTREAM_MODEL, prompt="Hi", max_tokens=3, stream=True)
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    with upstream.services.sessions() as session:
        assert session.query(HostedCall).count() == before + 3


# --- refusals ---------------------------------------------------------------------------------


def _one_line(exc: openai.APIStatusError) -> str:
    body = exc.body
    assert isinstance(body, dict), body
    message = str(body["message"])
    assert "\n" not in message and message
    return message


def test_bad_input_is_a_one_line_4xx(server: Server) -> None:
    """Unknown model, malformed messages, too many tokens, an overlong prompt: 4xx, one line."""
    client = server.client("partner")
    with pytest.raises(openai.NotFoundError) as e404:
        client.completions.create(model="lab/nothing@1.0", prompt="x", max_tokens=2)
    assert "does not exist" in _one_line(e404.value)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "wizard", "content": "x"}],  # type: ignore[list-item,misc]
        )
    assert "messages.0" in _one_line(bad.value)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=[], max_tokens=2)
    _one_line(bad.value)
    with pytest.raises(openai.BadRequestError) as too_many:
        client.completions.create(model=MODEL, prompt="x", max_tokens=100_000)
    assert "at most 512 tokens" in _one_line(too_many.value)
    with pytest.raises(openai.BadRequestError) as too_long:
        client.completions.create(model=MODEL, prompt="word " * 400, max_tokens=2)
    assert "context is 256 tokens" in _one_line(too_long.value)
    raw = httpx.post(
        f"{server.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {server.tokens['partner']}"},
        content=b"{not json",
    )
    assert 400 <= raw.status_code < 500 and "error" in raw.json()


def test_who_may_call(server: Server) -> None:
    """No token: 401; a read token: 403; a download grant: 403 saying why; all OpenAI-shaped."""
    anonymous = httpx.get(f"{server.url}/v1/models")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["message"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="rf_wrong", max_retries=0).models.list()
    with pytest.raises(openai.PermissionDeniedError, match="scope"):
        server.client("partner/read").models.list()
    with pytest.raises(openai.PermissionDeniedError, match="by download"):
        server.client("researcher").completions.create(model=MODEL, prompt="x", max_tokens=2)


def test_quota_refuses_with_429_and_retry_after(server: Server) -> None:
    """Two requests a minute: the third is a RateLimitError with Retry-After; the quota is
    in the database, so a second app on the same database refuses too."""
    grant = server.grant("quota@hosted.example")
    with transaction(server.services.sessions) as session:
        set_quota(session, session.get(Grant, grant.id), requests_per_minute=2)  # type: ignore[arg-type]
    client = server.client("quota")
    for _ in range(2):
        ok = client.completions.with_raw_response.create(model=MODEL, prompt="x", max_tokens=1)
        assert int(ok.headers["x-ratelimit-limit-requests"]) == 2
    with pytest.raises(openai.RateLimitError) as refused:
        client.completions.create(model=MODEL, prompt="x", max_tokens=1)
    headers = refused.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert "2 requests per minute" in _one_line(refused.value)
    second = build(server.services.settings)
    with serve(create_app(second)) as url:
        again = httpx.post(
            f"{url}/v1/completions",
            headers={"Authorization": f"Bearer {server.tokens['quota']}"},
            json={"model": MODEL, "prompt": "x", "max_tokens": 1},
        )
    assert again.status_code == 429 and again.headers["retry-after"]
    with server.services.sessions() as session:
        tags = session.scalars(
            select(AuditEvent.tag).where(AuditEvent.actor == "quota@hosted.example")
        )
        assert "hosted:call:refused" in list(tags)


def test_revocation_cuts_a_stream_in_flight(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A grant revoked while its stream runs: the stream ends with an error event, the call
    is logged as cut, and the next request is refused."""
    import threading

    from ringfence.hosted import gateway

    # The stream's first re-read of its grant waits until the test has revoked it: a fast
    # machine would otherwise finish the 200 tokens before the revocation commits.
    revoked = threading.Event()
    recheck = gateway._recheck

    def after_revocation(request: object, grant_id: int) -> str | None:
        revoked.wait(30)
        return recheck(request, grant_id)  # type: ignore[arg-type]

    monkeypatch.setattr(gateway, "RECHECK_S", 0.0)
    monkeypatch.setattr(gateway, "_recheck", after_revocation)
    client = server.client("cut")
    stream = client.completions.create(
        model=MODEL, prompt="Tell a long story:", max_tokens=200, temperature=0, stream=True
    )
    pieces = iter(stream)
    next(pieces)
    with transaction(server.services.sessions) as session:
        grant = session.get(Grant, server.grant("cut@hosted.example").id)
        assert grant is not None
        revoke_grant(session, grant, reason="NDA ended", actor="test")
    revoked.set()
    with pytest.raises(openai.APIError, match="NDA ended"):
        for _ in pieces:
            pass
    with server.services.sessions() as session:
        call = session.scalars(select(HostedCall).order_by(HostedCall.id.desc())).first()
        assert call is not None and call.state == "cut" and call.completion_tokens < 200
    with pytest.raises(openai.PermissionDeniedError, match="revoked"):
        client.completions.create(model=MODEL, prompt="x", max_tokens=1)


def test_every_call_is_audited_with_hashes_and_texts_only_by_terms(server: Server) -> None:
    """The call log keeps counts and hashes; texts only when the grant's terms allow it."""
    grant = server.grant("other@hosted.example")
    client = server.client("other")
    client.completions.create(model=MODEL, prompt="secret plan", max_tokens=2)
    with transaction(server.services.sessions) as session:
        set_quota(session, session.get(Grant, grant.id), keep_text=True)  # type: ignore[arg-type]
    client.completions.create(model=MODEL, prompt="open plan", max_tokens=2)
    with server.services.sessions() as session:
        calls = session.scalars(
            select(HostedCall).where(HostedCall.grant_id == grant.id).order_by(HostedCall.id)
        ).all()
        assert [c.state for c in calls] == ["done", "done"]
        hidden, kept = calls
        assert hidden.prompt_text is None and hidden.output_text is None
        assert len(hidden.prompt_sha256) == 64 and hidden.completion_tokens == 2
        assert kept.prompt_text == "open plan" and kept.output_text is not None
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.tag == "hosted:call:completed")
        ).all()
        payloads = [e.payload for e in events if e.payload.get("grant_id") == grant.id]
        assert [p["prompt_sha256"] for p in payloads] == [c.prompt_sha256 for c in calls]
        assert all("secret plan" not in str(e.payload) for e in events)
        assert quota_of(session, session.get(Grant, grant.id)).keep_text  # type: ignore[arg-type]


def test_usage_pages(server: Server) -> None:
    """The partner's usage page and the admins' one: a chart, quota left, the last calls."""
    server.client("partner").completions.create(model=MODEL, prompt="x", max_tokens=1)
    with transaction(server.services.sessions) as session:
        partner = session.scalars(select(User).where(User.email == "partner@hosted.example")).one()
        admin = make_user(
            session,
            f"admin-{utcnow().timestamp()}@hosted.example",
            role="admin",
            secrets=server.services.secrets,
        )
        cookies = {
            "partner": start_session(session, partner, ip=None, user_agent=None),
            "admin": start_session(session, admin, ip=None, user_agent=None),
        }
    mine = httpx.get(
        f"{server.url}/account/usage", cookies={"rf_session": cookies["partner"]}, timeout=60
    )
    assert mine.status_code == 200
    assert 'data-testid="usage-chart"' in mine.text and "data:image/png;base64," in mine.text
    assert MODEL in mine.text and "other@hosted.example" not in mine.text
    everyone = httpx.get(
        f"{server.url}/admin/hosted", cookies={"rf_session": cookies["admin"]}, timeout=60
    )
    assert everyone.status_code == 200 and "other@hosted.example" in everyone.text
    refused = httpx.get(
        f"{server.url}/admin/hosted", cookies={"rf_session": cookies["partner"]}, timeout=60
    )
    assert refused.status_code == 403


def test_reviewers_approve_hosted_access_by_api_and_page(server: Server) -> None:
    """A reviewer approves a request as hosted, through the API and through the review page."""
    import hashlib
    import hmac

    from ringfence.access.models import AccessRequest

    with transaction(server.services.sessions) as session:
        release = catalogue.get_release(session, "tiny-llm@1.0")
        stamp = utcnow().timestamp()
        reviewer = make_user(
            session, f"rev-{stamp}@hosted.example", role="reviewer", secrets=server.services.secrets
        )
        asked = []
        for key in ("by-api", "by-page"):
            asker = make_user(session, f"{key}-{stamp}@hosted.example")
            req = AccessRequest(user_id=asker.id, release_id=release.id, answers={})
            session.add(req)
            session.flush()
            asked.append(req.id)
        token = create_token(session, reviewer, "admin", actor="test").raw
        cookie = start_session(session, reviewer, ip=None, user_agent=None)
    r = httpx.post(
        f"{server.url}/api/v1/access/review/decisions",
        headers={"Authorization": f"Bearer {token}"},
        json={"request_ids": [asked[0]], "approve": True, "mode": "hosted"},
    )
    assert r.status_code == 200, r.text
    csrf = hmac.new(
        server.services.secrets.derive("web:csrf"), cookie.encode(), hashlib.sha256
    ).hexdigest()
    page = httpx.post(
        f"{server.url}/review/decide",
        cookies={"rf_session": cookie},
        data={"ids": str(asked[1]), "action": "approve", "mode": "hosted", "csrf_token": csrf},
    )
    assert page.status_code in (200, 303), page.text
    with server.services.sessions() as session:
        modes = session.scalars(
            select(Grant.mode).where(Grant.request_id.in_(asked), Grant.state == "active")
        ).all()
    assert modes == ["hosted", "hosted"]
