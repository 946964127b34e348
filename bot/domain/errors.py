"""Our own error types, so that every layer can tell "Pitcrew refused" from "Pitcrew broke"."""


class PitcrewError(Exception):
    """Base of every error whose message is meant for a person, not for a stack trace."""


class CommandError(PitcrewError, ValueError):
    """A command a person typed wrong: what was wrong, then the usage with an example.

    ``problem`` is ``None`` when the person only asked for the usage (``/unlock help``). Every
    command's grammar raises a subclass, so one renderer answers every mistake the same way.
    """

    def __init__(self, problem: str | None, *, usage: str) -> None:
        self.problem = problem
        self.usage = usage
        super().__init__(f"{problem}\n{usage}" if problem else usage)
