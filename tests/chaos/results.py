"""What a scenario found: the judge's figures, named checks, and the results table."""

import msgspec

from tests.bridge_harness import Verdict


class Check(msgspec.Struct, frozen=True):
    """One promise of the README, checked: what, whether it held, and the evidence."""

    name: str
    passed: bool
    evidence: str


class ScenarioResult(msgspec.Struct, kw_only=True):
    """The outcome of one scenario; figures are None where no stream was judged."""

    scenario: str
    transitions: int | None = None
    lost: int | None = None
    duplicated: int | None = None
    problems: list[str] = msgspec.field(default_factory=list)
    checks: list[Check] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        figures_clean = not self.lost and not self.duplicated and not self.problems
        return figures_clean and all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[str]:
        """Every reason the scenario failed, for an assertion message."""
        failed = [f"{c.name}: {c.evidence}" for c in self.checks if not c.passed]
        return failed + self.problems

    def check(self, name: str, passed: bool, evidence: object = "") -> bool:
        """Record a check and return whether it passed."""
        self.checks.append(Check(name, bool(passed), str(evidence)))
        return bool(passed)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def add_verdict(self, verdict: Verdict) -> None:
        """Count a judged stream into the figures (several streams add up)."""
        self.transitions = (self.transitions or 0) + verdict.transitions
        self.lost = (self.lost or 0) + verdict.lost
        self.duplicated = (self.duplicated or 0) + verdict.duplicated
        self.check(
            "stream exact (order, dates, sequences, no phantoms)",
            verdict.exact,
            _verdict_summary(verdict),
        )
        self.problems.extend(verdict.problems[:10])

    @property
    def outcome(self) -> str:
        if self.passed:
            return f"pass ({len(self.checks)} checks)"
        names = ", ".join(c.name for c in self.checks if not c.passed)
        return f"FAIL: {names or 'stream problems'}"


def _verdict_summary(verdict: Verdict) -> str:
    return (
        f"{verdict.operations} operations, {verdict.transitions} transitions, "
        f"{verdict.published_transitions} published; lost {verdict.lost}, "
        f"duplicated {verdict.duplicated}, out of order {verdict.out_of_order}, "
        f"phantom {verdict.phantom}, misdated {verdict.misdated}, "
        f"sequence gaps {verdict.sequence_gaps}"
    )


def render_table(results: list[ScenarioResult]) -> str:
    """The Markdown results table: one row per scenario."""
    lines = [
        "| scenario | transitions | lost | duplicated | outcome |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for result in results:
        figures = [_figure(result.transitions), _figure(result.lost)]
        figures.append(_figure(result.duplicated))
        lines.append(
            f"| {result.scenario} | {' | '.join(figures)} | {result.outcome} |"
        )
    return "\n".join(lines) + "\n"


def render_details(results: list[ScenarioResult]) -> str:
    """Every check and note of every scenario, for the report under the table."""
    lines: list[str] = []
    for result in results:
        lines.append(f"- **{result.scenario}** ({result.seconds:.0f} s)")
        for check in result.checks:
            mark = "ok" if check.passed else "FAILED"
            lines.append(f"  - {mark}: {check.name}: {check.evidence}")
        lines.extend(f"  - note: {note}" for note in result.notes)
        lines.extend(f"  - problem: {problem}" for problem in result.problems)
    return "\n".join(lines) + "\n"


def _figure(value: int | None) -> str:
    return "n/a" if value is None else str(value)
