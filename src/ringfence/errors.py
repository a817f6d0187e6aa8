"""One exception hierarchy for ringfence; the CLI and HTTP layers render every error from it.

Third-party errors are translated into these at the boundary where they occur, so a person
always reads one line saying what went wrong and what to do, never a traceback.
"""

from __future__ import annotations


class RingfenceError(Exception):
    """Base of every error a person may see; `diagnostics()` is the one line they read."""

    #: process exit status when the CLI fails with this error
    exit_code: int = 2
    #: HTTP status when a request fails with this error
    http_status: int = 400
    #: what to do about it, when the message alone does not say
    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def diagnostics(self) -> str:
        """One line: what is wrong, then what to do."""
        text = self.message.rstrip(".")
        if self.hint:
            return f"{text}: {self.hint.rstrip('.')}."
        return f"{text}."


class InvalidInput(RingfenceError):
    """A request, argument or field that cannot be accepted as given."""


class MalformedFile(InvalidInput):
    """A weights file whose structure is broken or hostile."""

    http_status = 422


class UnsafeFormat(InvalidInput):
    """A format that can run code when loaded (pickle) or that ringfence refuses to handle."""

    http_status = 415


class UnsupportedFormat(InvalidInput):
    """A well-formed file of a kind ringfence does not handle (yet)."""

    http_status = 415


class NotFound(RingfenceError):
    """The thing asked for does not exist (or is not visible to the caller)."""

    http_status = 404


class Conflict(RingfenceError):
    """The request contradicts what is already recorded."""

    http_status = 409


class AuthenticationRequired(RingfenceError):
    """The caller must sign in or present a token."""

    http_status = 401
    exit_code = 3


class PermissionDenied(RingfenceError):
    """The caller is known but may not do this."""

    http_status = 403
    exit_code = 3


class TwoFactorRequired(PermissionDenied):
    """The caller's role acts only with two-factor sign-in turned on, and it is off."""


class TokenInvalid(PermissionDenied):
    """A signed link or token that was forged, altered or belongs elsewhere."""


class TokenExpired(PermissionDenied):
    """A signed link or token past its expiry or its allowed uses."""


class RateLimited(RingfenceError):
    """Too many attempts in a short time."""

    http_status = 429


class CapacityError(InvalidInput):
    """A release cannot carry what is asked of it (e.g. too few weights for the fingerprint)."""


class IntegrityError(RingfenceError):
    """Stored data no longer matches its recorded hash or chain."""

    exit_code = 1
    http_status = 500


class Unavailable(RingfenceError):
    """Something ringfence depends on (a server, the database, a bucket) failed to answer."""

    exit_code = 4
    http_status = 503


class ServerUnreachable(Unavailable):
    """The ringfence server a client command talks to did not answer."""


class DatabaseUnavailable(Unavailable):
    """The database cannot be opened, reached or used."""


class StorageUnavailable(Unavailable):
    """The blob store (an S3 bucket) refused or failed a request."""
