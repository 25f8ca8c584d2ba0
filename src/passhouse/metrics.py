"""Prometheus metrics shared by the web tier and the push worker."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DEVICE_REQUESTS = Counter(
    "passhouse_device_requests_total",
    "PassKit web service requests by endpoint and status",
    ["endpoint", "status"],
)
DEVICE_LATENCY = Histogram(
    "passhouse_device_request_seconds",
    "PassKit web service latency by endpoint",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
PUSHES = Counter("passhouse_pushes_total", "Pushes sent to APNs by outcome", ["outcome"])
APNS_LATENCY = Histogram(
    "passhouse_apns_latency_seconds",
    "Time from sending a push to APNs' answer",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
PUSH_QUEUE_DEPTH = Gauge("passhouse_push_queue_depth", "Pushes waiting in the queue")
PASS_TYPE_APNS_ERRORS = Gauge(
    "passhouse_pass_type_apns_blocked",
    "1 while APNs rejects a pass type's credentials (403) and its pushes are held",
    ["pass_type_id"],
)
PUSH_STALLED = Gauge(
    "passhouse_push_stalled",
    "1 while pushes are due and none has been sent for PASSHOUSE_PUSH_STALL_SECONDS",
)
PASSES_SIGNED = Counter("passhouse_passes_signed_total", "Pass files built and signed")
# --- webhooks (ADR 0018) ---
WEBHOOK_ATTEMPTS = Counter(
    "passhouse_webhook_attempts_total",
    "Webhook delivery attempts by outcome (delivered, retry, failed)",
    ["outcome"],
)
WEBHOOK_PENDING = Gauge(
    "passhouse_webhook_deliveries_pending", "Webhook deliveries waiting to be delivered"
)
# Google Wallet (issue 12)
GOOGLE_SYNCS = Counter(
    "passhouse_google_syncs_total",
    "Google Wallet class and object writes by outcome (synced, retry, failed)",
    ["kind", "outcome"],
)
GOOGLE_FAILED_OBJECTS = Gauge(
    "passhouse_google_failed_objects",
    "Google objects whose last write Google refused for good (shown on the pass)",
)
GOOGLE_QUEUE_DEPTH = Gauge("passhouse_google_queue_depth", "Google syncs waiting in the queue")
