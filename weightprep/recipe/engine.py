"""Plan and run a recipe in a work dir, resumably, and leave a record: the one entry point.

The jobs live in their own modules: `state` (state.json and the digest cache), `plan` (the
graph of stages and what each will do), `preflight` (the cheap checks before anything heavy),
`execute` (running the stages), `record` (run.json and RUN.md); each stage kind is declared once
in `stages` (`registry` says what a declaration holds).

    runner = Runner(recipe, Path("work"))
    plan = runner.plan()            # reads no weights: sizes, mtimes and the digest cache
    checks = runner.preflight(plan) # raises, naming every problem, before any stage starts
    records = runner.run(plan)      # hashes inputs once, runs, records
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from weightprep.io.atomic import output_lock
from weightprep.progress import NullProgress, Progress
from weightprep.recipe import preflight as pre
from weightprep.recipe.execute import Listener, NullListener, execute
from weightprep.recipe.plan import Graph, Planned, plan
from weightprep.recipe.record import StageRecord
from weightprep.recipe.registry import Check
from weightprep.recipe.schema import Recipe

__all__ = ["Runner", "Planned", "StageRecord", "Check"]


@dataclass
class Runner:
    recipe: Recipe
    workdir: Path
    yes: bool = False
    progress: Progress = field(default_factory=NullProgress)
    listener: Listener = field(default_factory=NullListener)

    def __post_init__(self) -> None:
        # the plan reads no file in full: input digests come from the cache, or stay unknown
        self.graph = Graph(self.recipe, self.workdir, hashing=False)
        self.checks: list[Check] = []
        self._checked: list[Planned] | None = None  # the plan the checks passed for

    @property
    def stages(self):
        return self.graph.stages

    def plan(
        self, *, from_: str | None = None, only: str | None = None, redo: tuple[str, ...] = ()
    ) -> list[Planned]:
        return plan(self.graph, from_=from_, only=only, redo=redo)

    def preflight(self, planned: list[Planned]) -> list[Check]:
        """Every cheap check for the stages to run; raises one error naming what failed."""
        self.checks = pre.run_checks(self.graph, planned, self.yes)
        error = pre.refusal(self.checks)
        if error is not None:
            raise error
        self._checked = planned
        return self.checks

    def run(self, planned: list[Planned]) -> list[StageRecord]:
        # once per plan: the checks include network calls (Hub whoami, Drive about), and the
        # CLI has already run them to print them
        if self._checked is not planned:
            self.preflight(planned)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with output_lock(self.workdir.absolute()):
            g = Graph(self.recipe, self.workdir, hashing=True)
            g.wd.state["file_cache"].update(self.graph.wd.state["file_cache"])
            self.graph = g
            return execute(g, planned, self.checks, self.progress, self.listener)
