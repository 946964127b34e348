"""``GitLabSandbox``: the HTTP server, its authentication and faults, and the Python API that
tests and ``pitcrew demo`` use to set the scene and drive CI."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from bot.sandbox import SHUTDOWN_TIMEOUT
from bot.sandbox.gitlab import shapes
from bot.sandbox.gitlab.api import Api, Handler, Params, Reply, Request
from bot.sandbox.gitlab.delivery import ALL_EVENTS, Delivery, Dispatcher
from bot.sandbox.gitlab.instance import Instance
from bot.sandbox.gitlab.records import (
    DEFAULT_DURATION,
    DEFAULT_JOBS,
    ApiError,
    CiMode,
    Event,
    JsonDict,
    Outcome,
    Project,
    User,
    now,
)
from bot.sandbox.gitlab.repos import Action

log = logging.getLogger(__name__)

DEFAULT_TOKENS: Mapping[str, str] = {"glpat-sandbox": "pitcrew-bot"}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
_GATEWAY = {
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Time-out",
}
TICK = 0.02

Listener = Callable[[str, JsonDict], None]
"""Called with an event's kind (``"push"``, ``"tag_push"``, ``"merge_request"``, ``"pipeline"``,
``"job"``) and its webhook payload."""


@dataclass(frozen=True)
class Call:
    """One HTTP request the sandbox answered (``path`` is after ``/api/v4``, still encoded)."""

    method: str
    path: str
    status: int
    user: str | None
    time: float


@dataclass
class _Fault:
    method: str | None
    glob: str | None
    status: int
    remaining: int
    retry_after: int | None
    applied: bool

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.glob is None:
            return True
        return fnmatch.fnmatchcase(path, self.glob) or fnmatch.fnmatchcase(unquote(path), self.glob)


class GitLabSandbox:
    """A GitLab instance in a box, backed by bare git repositories under ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        tokens: Mapping[str, str] = DEFAULT_TOKENS,
        external_url: str | None = None,
        pipeline_speed: float | None = None,
    ) -> None:
        """``tokens`` maps each accepted token to its user (created as a bot user when unknown).

        ``external_url`` is the base of ``web_url``s and ``X-Gitlab-Instance`` (default: the
        sandbox's own address). With ``pipeline_speed``, a ticker moves pipelines along their
        simulated durations that many times faster than real time; without it pipelines move
        only when ``advance()``/``run_pipelines()`` are called.
        """
        self.root = root
        self.external_url = external_url.rstrip("/") if external_url else None
        self.calls: list[Call] = []
        self._dispatcher = Dispatcher(instance_url=self._web_base)
        self._listeners: list[Listener] = []
        self._instance = Instance(root, emit=self._emit, web_base=self._web_base)
        self._instance.speed = pipeline_speed
        self._api = Api(self._instance)
        self._faults: list[_Fault] = []
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None
        for token, username in tokens.items():
            self.add_token(token, username)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("the GitLab sandbox is already running")
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_route("*", "/api/v4/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self._host = host
        self._port = int(runner.addresses[0][1])
        await self._dispatcher.start()
        if self._instance.speed is not None:
            self._ticker = asyncio.create_task(self._tick_forever())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        with contextlib.suppress(TimeoutError):
            await self._dispatcher.drain(within=2.0)
        await self._dispatcher.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._port = None

    async def __aenter__(self) -> GitLabSandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """What ``gitlab.Gitlab(url, ...)`` takes: ``http://127.0.0.1:<port>``."""
        if self._port is None:
            raise RuntimeError("the GitLab sandbox is not running: await start() first")
        return f"http://{self._host}:{self._port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v4"

    def _web_base(self) -> str:
        if self.external_url:
            return self.external_url
        if self._port is not None:
            return f"http://{self._host}:{self._port}"
        return "http://127.0.0.1"

    # ------------------------------------------------------------------ set-up

    def add_user(self, username: str, *, name: str, email: str) -> int:
        return self._instance.add_user(username, name=name, email=email).id

    def add_token(self, token: str, username: str, *, read_only: bool = False) -> None:
        """Accept ``token`` as ``username``; a read-only token gets 403 on every write."""
        self._instance.add_token(token, username, read_only=read_only)

    def add_project(
        self,
        path: str,
        *,
        default_branch: str = "main",
        ci: bool | CiMode = False,
        jobs: Sequence[tuple[str, str]] = DEFAULT_JOBS,
        approvals_required: int = 0,
        pipeline_must_succeed: bool | None = None,
        description: str = "",
    ) -> int:
        """An empty project (its first commit creates ``default_branch``); returns its id.

        ``ci`` says which pipelines its ``.gitlab-ci.yml`` rules make: ``"both"`` (or ``True``)
        merge request pipelines for branches with an open MR and branch/tag pipelines otherwise
        (so a merge runs one on the target branch); ``"merge_requests"`` only merge request
        pipelines (nothing after a merge, nor for tags and other pushes); ``"branches"`` only
        branch and tag pipelines (an MR's head pipeline is its source branch's); ``"none"`` (or
        ``False``) no pipeline ever. ``jobs`` are (stage, name) pairs, in order.
        ``pipeline_must_succeed`` (default: true unless ``ci`` is ``"none"``) makes merges wait
        for a green head pipeline; ``approvals_required`` for approvals.
        """
        project = self._instance.add_project(
            path,
            default_branch=default_branch,
            ci=ci,
            jobs=jobs,
            approvals_required=approvals_required,
            pipeline_must_succeed=pipeline_must_succeed,
            description=description,
        )
        return project.id

    def commit(
        self,
        project: int | str,
        files: Mapping[str, str | bytes | None],
        *,
        message: str,
        author: str,
        branch: str = "main",
        start_branch: str | None = None,
        at: datetime | None = None,
    ) -> str:
        """Push one commit writing ``files`` (None deletes) to ``branch``; returns its SHA.

        ``author`` is a sandbox username or ``"Name <email>"``; ``at`` dates the commit. A
        missing branch starts from ``start_branch`` (default: the project's default branch).
        Hooks and pipelines follow as for any push.
        """
        with self._instance.lock:
            p = self._project(project)
            signature, user = self._instance.author(author, at or now())
            head = p.repo.branch(branch)
            start = None if head else (start_branch or p.default_branch)
            base = head or (p.repo.resolve(start) if start else None)
            existing = p.repo.files(base) if base else {}
            actions = []
            for path, content in files.items():
                data = content.encode() if isinstance(content, str) else content
                if data is None:
                    actions.append(Action(action="delete", file_path=path))
                elif path.strip("/") in existing:
                    actions.append(Action(action="update", file_path=path, content=data))
                else:
                    actions.append(Action(action="create", file_path=path, content=data))
            info = self._instance.commit(
                p,
                branch=branch,
                actions=actions,
                message=message,
                author=signature,
                user=user,
                start_branch=None
                if head
                else (start_branch or (p.default_branch if base else None)),
                committed_at=at,
            )
            return info.sha

    def branch(
        self, project: int | str, name: str, *, ref: str = "main", user: str = "root"
    ) -> str:
        with self._instance.lock:
            p = self._project(project)
            return self._instance.create_branch(p, name, ref, self._user(user))

    def tag(
        self,
        project: int | str,
        name: str,
        *,
        ref: str = "main",
        message: str | None = None,
        user: str = "root",
    ) -> str:
        """Create (and push) a tag; annotated when ``message`` is given. Returns the commit SHA."""
        with self._instance.lock:
            p = self._project(project)
            self._instance.create_tag(p, name, ref, message, self._user(user))
            sha = p.repo.resolve(f"refs/tags/{name}")
            assert sha is not None
            return sha

    # ------------------------------------------------------------------ issues

    def add_issue(
        self,
        project: int | str,
        title: str,
        *,
        description: str = "",
        labels: Sequence[str] = (),
        author: str = "root",
    ) -> int:
        """Open an issue; returns its iid (``#1`` is the project's first)."""
        with self._instance.lock:
            p = self._project(project)
            issue = self._instance.create_issue(
                p,
                user=self._user(author),
                title=title,
                description=description,
                labels=list(labels),
            )
            return issue.iid

    def issue(self, project: int | str, iid: int) -> JsonDict:
        """The issue as ``GET .../issues/:iid`` renders it (``labels`` among its fields)."""
        with self._instance.lock:
            p = self._project(project)
            return shapes.issue(self._instance, p, self._instance.issue(p, iid))

    def issue_notes(self, project: int | str, iid: int) -> list[JsonDict]:
        """The issue's notes, oldest first (system notes, such as label changes, included)."""
        with self._instance.lock:
            p = self._project(project)
            found = self._instance.issue(p, iid)
            return [shapes.note(self._instance, n) for n in found.notes]

    # ------------------------------------------------------------------ CI

    def set_pipeline_outcome(
        self,
        project: int | str,
        *,
        ref: str = "*",
        outcome: Outcome = "success",
        duration: float = DEFAULT_DURATION,
        failed_job: str | None = None,
        failure_reason: str = "script_failure",
    ) -> None:
        """How pipelines whose branch or tag matches the glob ``ref`` end (the last rule set
        wins). The outcome applies to pipelines still running too; ``duration`` (simulated
        seconds) to those created afterwards. ``"failed"`` fails ``failed_job`` (default: the
        last job) and skips the jobs of later stages. ``"hang"`` never finishes: ``failed_job``
        (default: the last job) starts and runs forever, the pipeline stays ``running``.
        ``"stuck"`` never starts: its jobs stay ``pending`` as when no runner takes them. A
        hanging or stuck pipeline does not hold up ``advance()``/``run_pipelines()``, and moves
        on once a later rule for it says ``"success"`` or ``"failed"``."""
        with self._instance.lock:
            self._instance.set_outcome(
                self._project(project),
                pattern=ref,
                outcome=outcome,
                duration=duration,
                failed_job=failed_job,
                failure_reason=failure_reason,
            )

    def advance(self, project: int | str | None = None) -> int:
        """One step (pending → running → each stage → result) for every unfinished pipeline."""
        with self._instance.lock:
            return self._instance.advance(self._project(project) if project is not None else None)

    def run_pipelines(self, project: int | str | None = None) -> None:
        """Run every unfinished pipeline to its end (auto-merges and their pipelines too)."""
        with self._instance.lock:
            self._instance.run_pipelines(self._project(project) if project is not None else None)

    def retry_pipeline(self, project: int | str, pipeline_id: int, *, user: str = "root") -> None:
        with self._instance.lock:
            p = self._project(project)
            self._instance.retry_pipeline(
                p, self._instance.pipeline(p, pipeline_id), self._user(user)
            )

    # ------------------------------------------------------------------ webhooks

    def add_webhook(
        self,
        url: str,
        *,
        secret_token: str | None,
        events: Iterable[str] = ALL_EVENTS,
        project: int | str | None = None,
        deliver_twice: bool = False,
    ) -> int:
        """POST ``events`` of ``project`` (default: every project) to ``url``, as GitLab does."""
        project_id = self._project(project).id if project is not None else None
        hook = self._dispatcher.add(
            url,
            secret_token=secret_token,
            events=events,
            project_id=project_id,
            deliver_twice=deliver_twice,
        )
        return hook.id

    def remove_webhook(self, hook_id: int) -> None:
        self._dispatcher.remove(hook_id)

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook POST, in the order they were queued, with their results once sent."""
        return self._dispatcher.deliveries

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(kind, payload)`` for every event, as it happens, before any webhook is
        sent: in the thread that made the change, with the sandbox locked (so it must be quick,
        must not call the sandbox's writes, and must not change ``payload``). What an in-process
        GitOps controller uses instead of a webhook. Returns a function that stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return stop

    def _emit(self, event: Event) -> None:
        self._dispatcher.submit(event)
        for listener in list(self._listeners):
            try:
                listener(event.kind, event.payload)
            except Exception:
                log.exception("a GitLab sandbox listener failed on a %s event", event.kind)

    async def drain(self, *, within: float = 5.0) -> None:
        """Wait until every queued webhook has been delivered (or has failed); raises
        ``TimeoutError`` after ``within`` seconds."""
        await self._dispatcher.drain(within=within)

    # ------------------------------------------------------------------ faults

    def fail(
        self,
        target: str = "*",
        *,
        status: int = 503,
        times: int = 1,
        retry_after: int | None = None,
        applied: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (a gateway page for
        502-504, GitLab's JSON otherwise). ``target``: ``"*"``, a method (``"PUT"``), a glob on
        the path after ``/api/v4`` (``"/projects/*/merge_requests/*/merge"``), or both
        (``"PUT /projects/*"``). ``applied=True`` lets the request take effect first."""
        if times < 1:
            raise ValueError("times must be at least 1")
        method: str | None = None
        glob: str | None = None
        head, _, rest = target.partition(" ")
        if head.upper() in _METHODS:
            method, glob = head.upper(), rest.strip() or None
        elif target != "*":
            glob = target
        self._faults.append(
            _Fault(
                method=method,
                glob=glob,
                status=status,
                remaining=times,
                retry_after=retry_after,
                applied=applied,
            )
        )

    # ------------------------------------------------------------------ inspection

    def project_id(self, project: int | str) -> int:
        return self._project(project).id

    def repo_path(self, project: int | str) -> Path:
        """The bare repository on disk (``git --git-dir=<this> log`` works)."""
        return self._project(project).repo.path

    def head(self, project: int | str, branch: str = "main") -> str | None:
        with self._instance.lock:
            return self._project(project).repo.branch(branch)

    def files(self, project: int | str, *, ref: str = "main") -> dict[str, str]:
        """Every file at ``ref`` (a branch, tag or SHA): path → blob SHA (empty if no such ref).
        Read one with :meth:`blob`; an unchanged file keeps its blob SHA."""
        with self._instance.lock:
            repo = self._project(project).repo
            sha = repo.resolve(ref)
            return {path: blob for path, (_, blob) in repo.files(sha).items()} if sha else {}

    def blob(self, project: int | str, sha: str) -> bytes | None:
        with self._instance.lock:
            return self._project(project).repo.blob(sha)

    def branches(self, project: int | str) -> dict[str, str]:
        """Branch name → head SHA."""
        with self._instance.lock:
            return self._project(project).repo.branches()

    def read_file(self, project: int | str, path: str, *, ref: str = "main") -> str | None:
        with self._instance.lock:
            repo = self._project(project).repo
            sha = repo.resolve(ref)
            blob = repo.blob_at(sha, path) if sha else None
            return blob.data.decode() if blob else None

    def merge_request(self, project: int | str, iid: int) -> JsonDict:
        """The MR as ``GET .../merge_requests/:iid`` renders it."""
        with self._instance.lock:
            p = self._project(project)
            return shapes.merge_request(self._instance, p, self._instance.merge_request(p, iid))

    def merge_requests(self, project: int | str) -> list[JsonDict]:
        with self._instance.lock:
            p = self._project(project)
            return [shapes.merge_request(self._instance, p, mr) for mr in p.merge_requests.values()]

    def notes(self, project: int | str, iid: int) -> list[JsonDict]:
        """The MR's notes, oldest first (system notes included)."""
        with self._instance.lock:
            p = self._project(project)
            mr = self._instance.merge_request(p, iid)
            return [shapes.note(self._instance, n) for n in mr.notes]

    def pipelines(self, project: int | str) -> list[JsonDict]:
        """Pipelines newest first, as ``GET .../pipelines/:id`` renders each, with ``jobs``."""
        with self._instance.lock:
            p = self._project(project)
            found = sorted(p.pipelines.values(), key=lambda pl: pl.id, reverse=True)
            return [
                {
                    **shapes.pipeline(self._instance, p, pl),
                    "jobs": [shapes.job(self._instance, p, pl, j) for j in pl.current_jobs],
                }
                for pl in found
            ]

    def _project(self, ref: int | str) -> Project:
        try:
            return self._instance.project(ref)
        except ApiError:
            raise KeyError(f"no project {ref!r} in the GitLab sandbox") from None

    def _user(self, username: str) -> User:
        user = self._instance.user_named(username)
        if user is None:
            raise KeyError(f"no user @{username} in the GitLab sandbox")
        return user

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.method.upper()
        raw = request.raw_path.split("?", 1)[0]
        path = raw.removeprefix("/api/v4") or "/"
        fault = self._take_fault(method, path)
        if fault is not None and not fault.applied:
            return self._answer_fault(method, path, fault, user=None)
        reply, username = await self._serve(request, method, path)
        if fault is not None:
            return self._answer_fault(method, path, fault, user=username)
        self.calls.append(Call(method, path, reply.status, username, time.monotonic()))
        return _response(reply, head=method == "HEAD")

    async def _serve(
        self, request: web.Request, method: str, path: str
    ) -> tuple[Reply, str | None]:
        token = request.headers.get("PRIVATE-TOKEN") or request.query.get("private_token")
        authorization = request.headers.get("Authorization", "")
        if not token and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        grant = self._instance.user_for_token(token) if token else None
        if grant is None:
            return Reply(status=401, json={"message": "401 Unauthorized"}), None
        user = self._instance.users[grant.user_id]
        routed = self._api.route(method, path)
        if routed is None:
            return Reply(status=404, json={"error": "404 Not Found"}), user.username
        if grant.read_only and method not in ("GET", "HEAD"):
            return Reply(status=403, json={"message": "403 Forbidden"}), user.username
        try:
            body = await _read_body(request)
        except ValueError as exc:
            return Reply(status=400, json={"error": str(exc)}), user.username
        handler, args = routed
        req = Request(
            method=method,
            path=path,
            params=Params(list(request.query.items()), body),
            user=user,
            origin=f"{request.scheme}://{request.host}",
        )
        return await asyncio.to_thread(self._run, handler, req, args), user.username

    def _run(self, handler: Handler, req: Request, args: dict[str, str]) -> Reply:
        with self._instance.lock:
            try:
                reply: Reply = handler(req, args)
            except ApiError as exc:
                return Reply(status=exc.status, json=exc.body)
            except Exception:
                log.exception("GitLab sandbox failed on %s %s", req.method, req.path)
                return Reply(status=500, json={"message": "500 Internal Server Error"})
            return reply

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _answer_fault(
        self, method: str, path: str, fault: _Fault, *, user: str | None
    ) -> web.Response:
        self.calls.append(Call(method, path, fault.status, user, time.monotonic()))
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        if fault.status in _GATEWAY:
            reason = _GATEWAY[fault.status]
            page = (
                f"<html>\r\n<head><title>{fault.status} {reason}</title></head>\r\n<body>\r\n"
                f"<center><h1>{fault.status} {reason}</h1></center>\r\n"
                "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
            )
            return web.Response(
                status=fault.status, text=page, content_type="text/html", headers=headers
            )
        phrase = {500: "Internal Server Error", 429: "Too Many Requests"}.get(fault.status, "Error")
        return web.json_response(
            {"message": f"{fault.status} {phrase}"}, status=fault.status, headers=headers
        )

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            await asyncio.to_thread(self._instance.tick, time.monotonic())


async def _read_body(request: web.Request) -> JsonDict:
    if not request.can_read_body:
        return {}
    kind = request.content_type
    if kind.startswith("multipart/"):
        form = await request.post()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    raw = await request.read()
    if not raw.strip():
        return {}
    if kind == "application/json" or raw.lstrip()[:1] in (b"{", b"["):
        try:
            value = json.loads(raw)
        except ValueError:
            raise ValueError("body is not valid JSON") from None
        if not isinstance(value, dict):
            raise ValueError("body must be a JSON object")
        return value
    return dict(parse_qsl(raw.decode(errors="replace"), keep_blank_values=True))


def _response(reply: Reply, *, head: bool) -> web.Response:
    if reply.status == 204:
        return web.Response(status=204, headers=reply.headers)
    if reply.body is not None:
        body = b"" if head else reply.body
        return web.Response(
            status=reply.status, body=body, content_type=reply.content_type, headers=reply.headers
        )
    text = "" if head else json.dumps(reply.json)
    return web.Response(
        status=reply.status, text=text, content_type="application/json", headers=reply.headers
    )
