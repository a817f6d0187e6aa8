"""The audit vocabulary: `area:subject:action` tags, one constant per kind of event.

Each area's tags are a `StrEnum` (as warehouse's `EventTag` is), so `record()` takes only a
tag declared here: a typo or a free-form string fails mypy and, at run time, `record()`.
The values are the strings stored in the audit log, unchanged.
"""

from __future__ import annotations

from enum import StrEnum, unique


class EventTag:
    """Every tag the audit log may carry; write events only with these."""

    @unique
    class Catalogue(StrEnum):
        OrganisationInitialised = "catalogue:organisation:initialised"
        ReleasePublished = "catalogue:release:published"
        LicenceAdded = "catalogue:licence:added"

    @unique
    class Account(StrEnum):
        UserAdded = "account:user:added"
        UserSignedUp = "account:user:signed_up"
        EmailVerified = "account:email:verified"
        LoginSucceeded = "account:login:succeeded"
        LoginFailed = "account:login:failed"
        LoggedOut = "account:login:logged_out"
        APITokenAdded = "account:api_token:added"
        APITokenRevoked = "account:api_token:revoked"
        RoleChanged = "account:role:changed"
        PasswordSet = "account:password:set"
        PasswordResetRequested = "account:password:reset_requested"
        SignUpRepeated = "account:user:signup_repeated"
        UserUpdated = "account:user:updated"
        UserDisabled = "account:user:disabled"
        LoginRateLimited = "account:login:rate_limited"
        TwoFactorEnabled = "account:two_factor:enabled"
        TwoFactorDisabled = "account:two_factor:disabled"
        TwoFactorReset = "account:two_factor:reset"
        TwoFactorFailed = "account:two_factor:failed"
        RecoveryCodeUsed = "account:two_factor:recovery_code_used"
        RecoveryCodesRegenerated = "account:two_factor:recovery_codes_regenerated"

    @unique
    class Access(StrEnum):
        LicenceAccepted = "access:licence:accepted"
        RequestSubmitted = "access:request:submitted"
        RequestApproved = "access:request:approved"
        RequestRejected = "access:request:rejected"
        RequestAppealed = "access:request:appealed"
        GrantAdded = "access:grant:added"
        GrantRevoked = "access:grant:revoked"
        GrantExpired = "access:grant:expired"
        CircleChanged = "access:circle:changed"
        NDARecorded = "access:nda:recorded"
        NDACountersigned = "access:nda:countersigned"
        InstitutionAdded = "access:institution:added"
        RequestExpired = "access:request:expired"
        RequestRevoked = "access:request:revoked"
        GrantRenewed = "access:grant:renewed"
        InstitutionGrantAdded = "access:institution_grant:added"
        InstitutionGrantRevoked = "access:institution_grant:revoked"
        NDARevoked = "access:nda:revoked"
        PolicyChanged = "access:policy:changed"
        ReleaseLicenceChanged = "access:licence:set"

    @unique
    class Fingerprint(StrEnum):
        CopyIssued = "fingerprint:copy:issued"
        RecipientRegistered = "fingerprint:recipient:registered"
        RecipientsSimulated = "fingerprint:recipient:simulated"

    @unique
    class Distribution(StrEnum):
        LinkCreated = "distribution:link:created"
        LinkRevoked = "distribution:link:revoked"
        Downloaded = "distribution:file:downloaded"
        DownloadRefused = "distribution:file:refused"

    @unique
    class Tracing(StrEnum):
        TraceRun = "tracing:trace:run"

    @unique
    class Jobs(StrEnum):
        JobRetried = "jobs:job:retried"

    class Downstream(StrEnum):
        DerivativeRegistered = "downstream:derivative:registered"
        LineageChecked = "downstream:lineage:checked"
        BaseNarrowedNoticed = "downstream:derivative:noticed"
        DerivativeCapped = "downstream:derivative:capped"
        ScheduleStepPlanned = "downstream:schedule:planned"
        ScheduleStepTaken = "downstream:schedule:taken"
        ScheduleStepHeld = "downstream:schedule:held"

    @unique
    class Webhooks(StrEnum):
        SubscriptionAdded = "webhooks:subscription:added"
        SubscriptionRemoved = "webhooks:subscription:removed"
        DeliveryFailed = "webhooks:delivery:failed"
        RedeliveryRequested = "webhooks:delivery:redelivery_requested"

    class Incident(StrEnum):
        Opened = "incident:incident:opened"
        Closed = "incident:incident:closed"
        EvidenceAdded = "incident:evidence:added"
        TraceAttached = "incident:trace:attached"
        EndpointAttributed = "incident:endpoint:attributed"
        ActionTaken = "incident:action:taken"
        NoticeDrafted = "incident:notice:drafted"
        NoticeEdited = "incident:notice:edited"
        NoticeSent = "incident:notice:sent"
        PackExported = "incident:pack:exported"

    class Hosted(StrEnum):
        CallCompleted = "hosted:call:completed"
        CallFailed = "hosted:call:failed"
        CallCut = "hosted:call:cut"
        CallRefused = "hosted:call:refused"
        QuotaSet = "hosted:quota:set"
        BackendSet = "hosted:backend:set"

    class Gates(StrEnum):
        ProvenanceRecorded = "gates:provenance:recorded"
        RunStarted = "gates:run:started"
        RunFinished = "gates:run:finished"
        RunFailed = "gates:run:failed"
        OverrideRequested = "gates:override:requested"
        OverrideSignedOff = "gates:override:signed_off"


#: any declared tag (what `ringfence.audit.services.record` accepts)
AuditTag = (
    EventTag.Catalogue
    | EventTag.Account
    | EventTag.Access
    | EventTag.Fingerprint
    | EventTag.Distribution
    | EventTag.Tracing
    | EventTag.Jobs
    | EventTag.Downstream
    | EventTag.Webhooks
    | EventTag.Incident
    | EventTag.Hosted
    | EventTag.Gates
)
#: the tag classes, one per area
TAG_CLASSES: tuple[type[StrEnum], ...] = (
    EventTag.Catalogue,
    EventTag.Account,
    EventTag.Access,
    EventTag.Fingerprint,
    EventTag.Distribution,
    EventTag.Tracing,
    EventTag.Jobs,
    EventTag.Downstream,
    EventTag.Webhooks,
    EventTag.Incident,
    EventTag.Hosted,
    EventTag.Gates,
)
