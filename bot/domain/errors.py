"""Our own error types, so that every layer can tell "Pitcrew refused" from "Pitcrew broke".

At a port, an error says what the caller can do about it (as kopf's error tree separates HTTP
statuses): ``Unavailable`` — the other side did not answer (down, slow, rate-limited), so try
again later and tell the person so; ``Refused`` — it answered no (the request or the
credentials are wrong), so retrying will not help and the person is told why.
"""


class PitcrewError(Exception):
    """Base of every error whose message is meant for a person, not for a stack trace."""


class Unavailable(PitcrewError):
    """The other side (GitLab, Slack, Redis, Kubernetes) did not answer: retry later."""


class Refused(PitcrewError):
    """The other side answered no: the request or the token is wrong; retrying will not help."""


class CommandError(PitcrewError, ValueError):
    """A command a person typed wrong: what was wrong, then the usage with an example.

    ``problem`` is ``None`` when the person only asked for the usage (``/unlock help``). Every
    command's grammar raises a subclass, so one renderer answers every mistake the same way.
    """

    def __init__(self, problem: str | None, *, usage: str) -> None:
        self.problem = problem
        self.usage = usage
        super().__init__(f"{problem}\n{usage}" if problem else usage)
