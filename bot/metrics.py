"""Prometheus metrics (SPEC section 8). Module-level, registered once per process."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "render"]

HTTP_REQUESTS = Counter(
    "pitcrew_http_requests_total", "HTTP requests answered", ["route", "status"]
)
HTTP_LATENCY = Histogram(
    "pitcrew_http_request_seconds",
    "Time to answer an HTTP request",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENTS = Counter(
    "pitcrew_events_total",
    "Inbound events by source and outcome (accepted, duplicate, rejected, ignored)",
    ["source", "outcome"],
)
EVENTS_UNROUTED = Counter(
    "pitcrew_events_unrouted_total",
    "Events of projects or workloads that no app of the catalog claims",
    ["source"],
)
PIPELINE_OBSERVATIONS = Counter(
    "pitcrew_pipeline_observations_total",
    "Pipeline and job observations by effect (advanced, unchanged: duplicate or stale, race)",
    ["effect"],
)
KUBE_WATCH_EVENTS = Counter(
    "pitcrew_kube_watch_events_total",
    "Watch events by context, kind and type",
    ["context", "kind", "type"],
)
KUBE_RELISTS = Counter("pitcrew_kube_relists_total", "Lists after a 410 Gone", ["context", "kind"])
KUBE_WATCH_ERRORS = Counter(
    "pitcrew_kube_watch_errors_total", "Watch connections lost or refused", ["context", "kind"]
)
ROLLOUTS = Counter(
    "pitcrew_rollouts_total",
    "Rollout announcements by what happened (started, succeeded, failed, recovered, ...)",
    ["what"],
)
STREAM_LAG = Gauge(
    "pitcrew_stream_lag", "Entries not yet delivered to the consumer group", ["stream"]
)
STREAM_PENDING = Gauge(
    "pitcrew_stream_pending", "Entries delivered but not yet acknowledged", ["stream"]
)
STREAM_DEAD_LETTERS = Counter(
    "pitcrew_stream_dead_letters_total",
    "Entries moved to the dead-letter stream after their handler failed every try (a bug)",
    ["stream"],
)
SLACK_CALLS = Counter(
    "pitcrew_slack_calls_total", "Slack Web API calls by method and outcome", ["method", "outcome"]
)
OUTBOX_PENDING = Gauge("pitcrew_outbox_pending", "Slack messages waiting in the outbox")
LEADER = Gauge("pitcrew_leader", "1 while this replica holds the named lease", ["lease"])
STORE_UNCONFIRMED = Counter(
    "pitcrew_store_unconfirmed_total",
    "Writes REDIS_MIN_REPLICAS replicas did not confirm in time (answered 503 or 'try again')",
)


def render() -> bytes:
    return generate_latest()


COMMAND_LATENCY = Histogram(
    "pitcrew_command_seconds",
    "Time from a slash command or button click to its answer, by command and outcome",
    ["command", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30),
)
RELEASES = Counter(
    "pitcrew_releases_total",
    "Releases by kind (deploy, rollback) and the state they reached (awaiting_approval,"
    " merging, merged, healthy, deployed, failed, rejected, expired, refused, ...)",
    ["kind", "step"],
)
ROLLOUT_DURATION = Histogram(
    "pitcrew_rollout_duration_seconds",
    "How long rollouts took, from start to rolled out or failed",
    ["outcome"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 3600),
)
ACCESS_GRANTS = Counter(
    "pitcrew_access_grants_total",
    "Break-glass access grants by environment and the state they reached (awaiting_approval,"
    " active, revoking, revoked, revoke_failed, rejected, expired, ...)",
    ["env", "state"],
)
ACCESS_HELD = Gauge(
    "pitcrew_access_held",
    "Break-glass access grants whose RoleBinding is in git now (active, being revoked, or"
    " failing to be revoked), per environment",
    ["env"],
)

# Delivery insights (DORA): counted once per record, on the replica that wrote it; historical
# records written by ``pitcrew dora backfill`` are not counted (they are not news).
DORA_DEPLOYMENTS = Counter(
    "pitcrew_dora_deployments_total",
    "Deployments recorded (releases that ended healthy or deployed, rollouts no release"
    " explains), by app, env and kind (deploy, promotion, rollback, autopilot, outside)",
    ["app", "env", "kind"],
)
DORA_LEAD_TIME = Histogram(
    "pitcrew_dora_lead_time_seconds",
    "Lead time for changes: from each commit of a deployed change's changelog to the deployment",
    ["env"],
    buckets=(
        600, 3600, 4 * 3600, 12 * 3600, 86400, 2 * 86400, 4 * 86400, 7 * 86400, 14 * 86400,
        30 * 86400, 90 * 86400,
    ),
)  # fmt: skip
DORA_FAILED_CHANGES = Counter(
    "pitcrew_dora_failed_changes_total",
    "Changes that failed (failed, not_seen), were superseded by a rollback, or undone by one",
    ["app", "env"],
)
DORA_RESTORE = Histogram(
    "pitcrew_dora_restore_seconds",
    "Time to restore: from a failed change (or the rollback request that undid it) to the next"
    " deployment of that app and env",
    ["env"],
    buckets=(60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400),
)
DORA_DIGESTS = Counter(
    "pitcrew_dora_digests_total",
    "Weekly digests sent, by whether their chart was uploaded (chart) or not (text)",
    ["outcome"],
)
