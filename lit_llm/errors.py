"""Error messages as users see them: one line that names the problem and the fix."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (the disk is full, say); the previous one is intact. The one OSError
    the CLI shows as one line: its message names the checkpoint kept."""


# Lines of jsonargparse's nested-type reports that restate the type instead of giving the reason.
NOISE = ("Does not validate against any of the", "Subtypes:", "Errors:", "Given value", "- Expected a <class")


def one_line(err: BaseException | str) -> str:
    """An error's message on one line: jsonargparse reports a value that fails a ``str | ModelConfig`` type
    as a ten-line dump of the subtypes and the whole Namespace; the reason is the one line that is not noise."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    reasons = [line.removeprefix("- ") for line in lines if not line.startswith(NOISE)]
    return " ".join(reasons) or (type(err).__name__ if isinstance(err, BaseException) else "error")
