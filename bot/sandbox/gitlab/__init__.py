"""A GitLab instance in a box: a REST API v4 subset over real git repositories, for tests and
``pitcrew demo``.

The real ``python-gitlab`` client (``gitlab.Gitlab(sandbox.url, private_token=...)``) talks to it
unchanged, and every repository is a bare git repository on disk (``sandbox.repo_path(...)``):
each API commit is one real git commit, each merge a real merge commit.

Simulated, as GitLab documents it (doc/api/*.md, webhook_events.md):

* Auth: ``PRIVATE-TOKEN`` or ``Authorization: Bearer`` against the configured tokens (401
  ``{"message": "401 Unauthorized"}``); read-only tokens get 403 on writes. ``GET /user``,
  ``/users?username=|search=``, ``/users/:id`` (with ``public_email`` and ``email``).
* Projects by id or URL-encoded path (``platform%2Fdeployments``). Repository files (get, ``HEAD``
  with ``X-Gitlab-*`` headers, raw, and create/update/delete), blobs, tree (offset or keyset
  pagination), commits (list with ``ref_name``/``path``/``since``/``until``/``all``, get with
  stats and last pipeline, diff, related merge requests, create with ``actions``
  create/update/delete/move/chmod, ``start_branch``/``start_sha``/``force``, ``last_commit_id``
  checks — GitLab's 400 messages when an action does not apply), branches and tags (list with
  ``search``, get, create, delete; tags newest first or by name/version), compare.
* Merge requests: create (409 for a second open MR of a branch), get, list (state, branches,
  labels, iids, author, search), update (title, description, labels, target, ``state_event``
  close/reopen), commits, changes, diffs, pipelines, notes, approvals/approve/unapprove (``sha``
  checked: 409; approving twice: 401), merge (``sha`` 409, conflicts 406, not mergeable 405,
  ``merge_when_pipeline_succeeds``/``auto_merge``, ``should_remove_source_branch``), real
  ``merge_status``/``detailed_merge_status``/``has_conflicts`` (``git merge-tree``).
* Issues: create, get, list (state, labels, iids, search), update (title, description,
  ``labels``/``add_labels``/``remove_labels``, ``state_event``), notes (list, create; label
  changes leave system notes). Project labels (list, create), created on first use by an issue or
  an MR; scoped labels (``deployed::production``) are exclusive per scope on an issue or an MR,
  as on GitLab Premium: adding ``deployed::production`` removes ``deployed::staging``.
* CI in the setups GitOps repos have, chosen per project with ``add_project(ci=...)`` as their
  ``.gitlab-ci.yml`` rules would choose it:

  - ``"both"`` (``True``): a merge request pipeline (``refs/merge-requests/<iid>/head``,
    ``source: merge_request_event``) when an MR is opened and for each push to its source
    branch; branch pipelines for other pushes, so merging runs one on the target branch; tag
    pipelines;
  - ``"merge_requests"``: merge request pipelines only (``rules: - if: $CI_PIPELINE_SOURCE ==
    "merge_request_event"``): nothing after a merge, for tags or for other pushes;
  - ``"branches"``: branch and tag pipelines only: a push to an MR's source branch runs a branch
    pipeline, which is the MR's ``head_pipeline`` (and what auto-merge waits for);
  - ``"none"`` (``False``, the default): no pipeline ever; pipelines are then not required, so
    ``merge_when_pipeline_succeeds`` merges at once.

  Jobs per stage; outcomes set per branch glob (``set_pipeline_outcome``): ``success``,
  ``failed``, ``hang`` (a job runs forever) or ``stuck`` (jobs stay pending); created → pending
  → running → success/failed one ``advance()`` at a time or on a ticker at ``pipeline_speed``;
  retries make new jobs; auto-merge follows the head pipeline and is aborted by a push to the
  source branch. Pipelines, pipeline jobs, project jobs.
* Webhooks (Push, Tag Push, Merge Request, Pipeline, Job Hook) with GitLab's payload shapes and
  headers (``X-Gitlab-Event``, ``X-Gitlab-Token``, ``X-Gitlab-Event-UUID``,
  ``X-Gitlab-Webhook-UUID``, ``X-Gitlab-Instance``, ``Idempotency-Key``, ``User-Agent:
  GitLab/17.x``), delivered in order per project, recorded in ``deliveries``, optionally twice;
  the same events to in-process listeners (``listen``), as ``bot.sandbox.gitops`` hears pushes.
* Pagination headers (``X-Page``, ``X-Per-Page``, ``X-Total``, ``X-Total-Pages``,
  ``X-Next-Page``, ``X-Prev-Page``, ``Link``) as ``get_all``/``iterator`` follow them; faults on
  demand (5xx gateway pages, 429 with ``Retry-After``, optionally after the request took effect).

Deliberately not simulated: groups and namespaces beyond the project path, members and
permissions (every token may do everything, or read only), forks, protected branches and push
rules, squash and fast-forward merges, rebase, draft/discussion checks other than a ``Draft:``
title, approval rules (one project-wide count; the author may approve), issue boards and
links, releases, environments and deployments (no Deployment Hook), Issue and Note Hooks, job
logs and artifacts,
``.gitlab-ci.yml`` (jobs come from ``add_project(jobs=...)``), LFS, the GraphQL API, webhook
retries and auto-disabling, rate limits other than injected 429s.
"""

from bot.sandbox.gitlab.delivery import ALL_EVENTS, USER_AGENT, Delivery
from bot.sandbox.gitlab.records import CI_MODES, DEFAULT_DURATION, DEFAULT_JOBS, CiMode, Outcome
from bot.sandbox.gitlab.server import DEFAULT_TOKENS, Call, GitLabSandbox, Listener

__all__ = [
    "ALL_EVENTS",
    "CI_MODES",
    "DEFAULT_DURATION",
    "DEFAULT_JOBS",
    "DEFAULT_TOKENS",
    "USER_AGENT",
    "Call",
    "CiMode",
    "Delivery",
    "GitLabSandbox",
    "Listener",
    "Outcome",
]
