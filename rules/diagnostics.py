"""Diagnostics: a mistake (or warning) in a workflow file, pointed at by file:line:col."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .visible_text import one_line, visible


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem found in a file. ``line`` and ``col`` are 1-based."""

    file: str
    line: int
    col: int
    message: str
    severity: str = field(default="error", compare=False)  # error | warning

    def __post_init__(self) -> None:
        # A message quotes the file's own text (a key, a rule's name, a plugin's error): no escape
        # sequence may reach the terminal, piped or not. Names are quoted on one line where the
        # message is built (visible_text.quoted); a plugin's error may keep its lines.
        object.__setattr__(self, "file", one_line(str(self.file)))
        object.__setattr__(self, "message", visible(str(self.message)))

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else "warning: "
        return f"{self.file}:{self.line}:{self.col}: {prefix}{self.message}"

    def as_dict(self) -> dict:
        return asdict(self)


class WorkflowInvalid(Exception):
    """A workflow file has errors; ``diagnostics`` lists every one of them."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        super().__init__("\n".join(str(d) for d in errors or self.diagnostics))
