"""The metrics vocabulary: every Prometheus metric ringfence exports, defined once here.

Areas import the metric they feed (`metrics.MAILS_SENT.inc()`); `ringfence.operations.services`
renders them at `GET /metrics`. Labels stay few and bounded: routes are templates
(`/d/{token}/f/{path:path}`), never raw paths, which would grow without bound and put link
tokens into the metrics.

With several server processes set `PROMETHEUS_MULTIPROC_DIR` to an empty directory before
they start (prometheus-client reads it at import): each process then writes its values there
and a scrape of any of them reports the sum over all.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram

#: request latencies (seconds): pages and API calls in ms, downloads up to minutes
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

HTTP_REQUESTS = Counter(
    "ringfence_http_requests",
    "HTTP requests answered, by route template, method and status class (2xx, 4xx...).",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "ringfence_http_request_duration_seconds",
    "Time from a request's arrival to its last byte sent, by route template and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
DOWNLOAD_BYTES = Counter(
    "ringfence_download_bytes",
    "Bytes of release files sent to recipients: fingerprinted (weights) or plain (the rest).",
    ["kind"],
)
DOWNLOADS_REFUSED = Counter(
    "ringfence_downloads_refused",
    "Download requests refused (and audited): no grant, a dead link, another's copy.",
)
MAILS_QUEUED = Counter(
    "ringfence_mails_queued", "Mails queued by committed decisions (rolled-back ones excluded)."
)
MAILS_SENT = Counter("ringfence_mails_sent", "Mails the SMTP server accepted.")
MAILS_FAILED = Counter(
    "ringfence_mails_failed", "Delivery attempts that failed (each is retried later)."
)
#: "mostrecent": with several processes, the value the last worker pass saw
JOB_QUEUE_DEPTH = Gauge(
    "ringfence_job_queue_depth",
    "Background jobs queued (due or waiting out a retry's backoff), by queue (manifests, "
    "maintenance...).",
    ["queue"],
    multiprocess_mode="mostrecent",
)
JOB_FAILURES = Counter(
    "ringfence_job_failures",
    "Background jobs that failed for good (retries spent), by task (distribution.manifest, "
    "access.expire...); `manifest`: a failure of `ringfence manifests compute`'s pass.",
    ["job"],
)

# Known label values exist from the start, so a dashboard reads 0 rather than no data.
for _kind in ("fingerprinted", "plain"):
    DOWNLOAD_BYTES.labels(_kind)
for _job in ("manifest", "distribution.manifest", "access.expire"):
    JOB_FAILURES.labels(_job)
for _queue in ("manifests", "maintenance"):
    JOB_QUEUE_DEPTH.labels(_queue)


def counted_download(chunks: Iterator[bytes], kind: str) -> Iterator[bytes]:
    """`chunks` as they are sent, each one's length added to DOWNLOAD_BYTES{kind}."""
    counter = DOWNLOAD_BYTES.labels(kind)
    for chunk in chunks:
        yield chunk
        # Counted once the server asks for the next chunk: a client that hung up mid-chunk
        # closes the generator at the yield, and what it never received is not counted.
        counter.inc(len(chunk))
