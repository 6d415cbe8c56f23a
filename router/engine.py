"""The engine: turns rule decisions into transitions of the store.

Every public method that changes state runs one transaction that also
writes the audit event(s) of the change. The CLI and the TUI are two faces
over this API.
"""

from __future__ import annotations

import getpass
import hashlib
import operator
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rules.visible_text import quoted

from . import clock
# Everything a claim, a submit or a decision runs is imported here, never lazily: an import
# inside a transaction holds the write lock while a module loads (or compiles) and stalls
# every other writer (claim p99 at K=64 went from 59 to 218 ms when these loaded at first use).
from .agreement import agreement_of
from .consensus import DS_HISTORY, final_form, gold_answer_right
from .eligibility import at_capacity, crews, queue_specs, queue_warning, task_stalled, unused_by_queues
from .context import (NEW_TASK_STATE, Lazy, creation_context, prediction_facts, review_facts, stored_prediction,
                      task_facts, votes_facts)
from .errors import (AssignmentError, FunctionsMissing, LabelyardError, NothingToDo, NoWorkflow,
                     PluginModuleMissing, UnknownTask, UnknownWorker)
from .function_hints import LISTED, callers_note, unknown_functions, where_functions_come_from
from .gold import pick_gold, rescore
from .os_text import shell_word
from .returns import dropped_queue_reason, listed, returnable
from .stalls import held_named, open_stalls
from .store import TASK_INSERT_COLUMNS, ClaimWalkTooLong, Store, control_character, dumps, dumps_finite, loads, text_problem
from .vote_agreement import compares_otherwise, mark_task, rejudge
from .worker_rules import run_on_worker

if TYPE_CHECKING:  # ingest only, imported where used: `labelyard claim` starts without them
    from .ingest import RowProblem, TaskInput
    from .ingest_pipeline import IngestReport, PartRejects, RoutedBatch

MAX_CAPACITY = 10_000  # active slots one worker may hold at once: far past any person's work, and a number SQLite stores
STAGES = ("annotate", "review", "correct", "escalated")
STAGE_OF_ACTION = {"annotate": "annotate", "review": "review", "escalate": "escalated"}
FINAL_BY_STAGE = {"review": "reviewer", "escalated": "expert"}
# A slot of each stage as a message names it, with its article ("is an annotate slot", "is a correction slot").
SLOT_NAMES = {"annotate": "an annotate slot", "correct": "a correction slot", "review": "a review slot",
              "escalated": "an escalated slot"}
LATE_STATUSES = ("released", "expired")  # slots taken back from their holder: a submission is kept, decides nothing
# Rows routed at once; the writer commits them whole only while nobody else writes. Every commit
# writes each index page it dirtied, and random external ids and priorities dirty about a leaf
# a row: a larger batch writes each page once for more rows (8,000 rather than 2,000: 15% less
# CPU a row at 100k rows). The first batch is smaller, so that the writer starts early, and each
# next one twice the size, up to this.
INGEST_BATCH_ROWS = 8000
INGEST_FIRST_BATCH_ROWS = 1000
INGEST_BATCH_SECONDS = 0.25  # a batch holds at most this much reading (a slow stream's rows are committed then)
INGEST_BATCH_BYTES = 8 << 20  # and rows of at most this many bytes as read (JSON Lines, JSON): large rows, few a batch
INGEST_PAUSE_SECONDS = 0.05  # a stream quiet this long has what it gave so far committed
# A claim walks past the tasks at the head of a queue its worker may not take under the write lock
# for at most about this many SQLite instructions (some 20 a task stepped over, ~1 ms); a longer
# walk is done again without the lock, then its task taken if still free (:meth:`Engine.claim`).
CLAIM_WALK_STEPS = 20_000
CLAIM_ATTEMPTS = 3  # the last one walks under the lock whatever it costs: a claim always ends
QUEUE_AGREEMENT_VOTES = 2000  # queue.kappa / queue.alpha read the tasks of this many latest votes (by default)


def current_user() -> str:
    """``LABELYARD_WORKER``, else the operating-system user name."""
    name = os.environ.get("LABELYARD_WORKER")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def current_user_source() -> str:
    """Where :func:`current_user` took the name from, for messages about it."""
    return "LABELYARD_WORKER" if os.environ.get("LABELYARD_WORKER") else "your user name"


def name_problem(text: str) -> str | None:
    """Why ``text`` cannot be a new worker's name, a role or a skill; ``None`` when it can.

    Names are compared exactly, so a space at either end would make a second,
    look-alike worker (or a role no queue asks for): it is refused, not stripped.
    """
    if not text.strip():
        return "it is empty"
    if text != text.strip():
        return "it starts or ends with a space"
    return text_problem(text) or (control_character(text) and "it holds a control character")


def _check_capacity(capacity: int | None) -> None:
    """Refuse a capacity below 1 or past :data:`MAX_CAPACITY` (``None``: no limit)."""
    if capacity is None:
        return
    if capacity < 1:
        raise LabelyardError("--capacity must be at least 1")
    if capacity > MAX_CAPACITY:
        raise LabelyardError(f"--capacity must be at most {MAX_CAPACITY:,}, not {capacity} "
                             "(a worker without a capacity has no limit)")


def compile_stored(spec: dict[str, Any], functions: dict[str, Callable] | None = None) -> tuple[Any, Any]:
    """A stored workflow version compiled: ``(workflow, functions)``.

    Without ``functions``, plugins are loaded only if the workflow calls a
    function the built-ins lack; the functions used are returned with it.
    """
    from rules.diagnostics import WorkflowInvalid
    from rules.workflow import Workflow

    try:
        return Workflow.from_spec(spec, functions), functions
    except WorkflowInvalid:
        if functions is not None:
            raise
        from .plugins import load_plugins  # only a workflow calling plugin functions loads plugins

        modules = spec.get("plugins") or ()
        loaded = load_plugins(modules)
        functions = loaded.functions
        try:
            return Workflow.from_spec(spec, functions), functions
        except WorkflowInvalid as exc:
            missing = module_missing(spec, loaded.errors) or functions_missing(spec, exc)
            if missing is None:
                raise
            raise missing from None


def module_missing(spec: dict[str, Any], errors: Iterable[Any]) -> PluginModuleMissing | None:
    """Why a stored workflow that does not compile fails here, when one of its ``plugins:`` modules
    did not load (``errors``: the :class:`~router.plugins.PluginInfo` of the plugins that failed):
    the module and Python's reason. ``None`` when every one of them loaded."""
    modules = spec.get("plugins") or ()
    failed = [(info.location, info.error) for info in errors if info.origin == "workflow" and info.location in modules]
    if not failed:
        return None
    module, error = failed[0]
    return PluginModuleMissing(
        f"the active workflow `{spec.get('workflow')}` calls functions of plugin module `{module}`, "
        f"which does not load here: {error} (is its folder on PYTHONPATH for this command, "
        "as it was for `apply`? under cron too)")


def functions_missing(spec: dict[str, Any], invalid: Any) -> FunctionsMissing | None:
    """Why a stored workflow that does not compile fails here, when it calls functions no loaded
    plugin registers (``invalid``: its :class:`~rules.diagnostics.WorkflowInvalid`): the functions,
    the rules that call them, and where rule functions come from (:mod:`router.function_hints`, as
    ``validate`` says it of a file). ``None`` for any other error.

    A stored version was checked by ``apply``, which had the plugin: here it is not loaded (a
    plugin file ``apply`` found in ``LABELYARD_PLUGINS_DIR``, a cron job without it). Said without
    a file position (``<stored workflow>:1:1`` pointed at nothing)."""
    names = unknown_functions(invalid.diagnostics)
    if not names:
        return None
    called = ", ".join(quoted(n) for n in names)
    return FunctionsMissing(
        f"the active workflow {quoted(spec.get('workflow'))} calls {called}{callers_note(spec, names)}, which no "
        f"plugin loaded here registers: {where_functions_come_from()}; load the one that registers it as `apply` did "
        f"(under cron too). {LISTED}")


class Engine:
    """Labelyard's core operations over one database."""

    claim_walk_steps = CLAIM_WALK_STEPS  # the walk's budget under the lock (see :meth:`claim`)

    def __init__(self, store: Store, functions: dict[str, Callable] | None = None):
        self.store = store
        self.functions = functions
        self._workflow: Any = None
        self._workflow_id: int | None = None
        self._agreement_cache: dict[str, tuple[int, tuple[float | None, float | None]]] = {}
        self._queue_cache: dict[tuple[str, str], list[str]] = {}

    @classmethod
    def open(cls, db: str | None = None) -> "Engine":
        """An engine over an initialised database."""
        return cls(Store.open(db))

    def close(self) -> None:
        self.store.close()

    # -- workflow --------------------------------------------------------------------------
    @property
    def workflow(self):  # -> rules.workflow.Workflow
        """The active workflow (compiled once per engine and version): the one active when it was
        first read, and in each write transaction of :meth:`transaction` the one active in it."""
        if self._workflow is None:
            row = self.store.active_workflow()
            if row is None:
                raise NoWorkflow("no workflow applied yet; run `labelyard apply FILE.workflow.yaml`")
            self._workflow, self._workflow_id = self._compiled(row["id"], row["spec"]), row["id"]
        return self._workflow

    def _compiled(self, version_id: int, spec: str | None = None) -> Any:
        """Stored version ``version_id`` compiled (``spec``: its stored JSON, if read). A version once
        replaced is never active again (an apply stores a new one), so each is compiled once."""
        if spec is None:
            spec = self.store.workflow_version(version_id)["spec"]
        from rules.diagnostics import WorkflowInvalid

        try:
            workflow, self.functions = compile_stored(loads(spec), self.functions)
        except WorkflowInvalid:  # it calls functions of plugins the ones given lack: loaded for it
            if self.functions is None:
                raise
            workflow, self.functions = compile_stored(loads(spec))
        return workflow

    @contextmanager
    def transaction(self, *, rollback: bool = False) -> Iterator[Any]:
        """A write transaction (:meth:`Store.transaction`) whose rules are the version active in it.

        Another process may apply a version while this one waits for the write lock, or after
        this engine compiled its own: every transaction that decides by rules (claim, submit,
        timers, reviewers, lead actions) starts by reading which version is active (one
        small read; nothing when no workflow was loaded yet, as the first use loads the active
        one) and decides by it, so no decision takes a retired version's rule and each decision
        event follows the ``workflow_applied`` event of the version that made it. A nested
        transaction joins the outer one and its version."""
        outer = not self.store.conn.in_transaction
        with self.store.transaction(rollback=rollback) as conn:
            if outer:
                self._follow_active(self.store.active_workflow_id() if self._workflow is not None else None)
            yield conn

    def follow_active(self) -> None:
        """Outside a transaction: load the version active now when another process applied one
        since this engine loaded its own (each step of a long ``labelyard run``)."""
        if self._workflow is not None:
            self._follow_active(self.store.active_workflow_id())

    def _follow_active(self, active: int | None) -> bool:
        """Decide by version ``active`` (the active one, just read) from now on when this engine
        loaded another; in a transaction, compiled under its lock (once: a rare event). True when
        it changed."""
        if active is None or self._workflow is None or active == self._workflow_id:
            return False
        self._workflow, self._workflow_id = self._compiled(active), active
        self._queue_cache, self._agreement_cache = {}, {}
        return True

    @property
    def workflow_id(self) -> int:
        self.workflow  # noqa: B018 - loads it
        assert self._workflow_id is not None
        return self._workflow_id

    def apply(self, text: str, filename: str, *, replace: bool = False, actor: str | None = None,
              hold_orphans: bool = False) -> dict[str, Any]:
        """Check and store a new version of the workflow and make it active.

        Tasks keep the version that routed them. Applying a workflow of
        another name needs ``replace``. A version that drops a queue still
        holding open tasks (or corrections waiting there) is refused, since
        nobody could claim them again,
        unless ``hold_orphans``: then those tasks are held for a lead, in the
        same transaction. So are the gold questions whose answer the new
        labels refuse (``held_gold``: external id → why): served, they would
        score every answer wrong; ``gold add`` with a valid answer reopens them.

        Open tasks waiting for a review whose votes were cast in a queue the
        version lacks are not refused (they can still be reviewed, approved or
        escalated) but counted, per queue, in ``votes_in_dropped_queues``:
        a ``return`` would hold them (:meth:`_returns_to_dropped_queues`).
        """
        result = self._switch_version(text, filename, replace=replace, actor=actor, hold_orphans=hold_orphans)
        result["votes_in_dropped_queues"] = self._returns_to_dropped_queues() if result["changed"] else {}
        return result

    def _returns_to_dropped_queues(self) -> dict[str, int]:
        """Per queue the active version lacks, the open tasks in a review or escalated stage whose
        votes were cast there: a ``return`` offers corrections in the votes' queue, so rejecting one
        holds it. Empty when no ``on_review`` rule returns, or no version ever had another queue.

        Read after the switch, outside the write lock (a warning need not hold up claims); the
        kept counters say which queues hold such tasks, and only those are read.
        """
        workflow = self.workflow
        if not any(rule.action.kind == "return" for rule in workflow.rules.get("on_review", ())):
            return {}
        gone = self.store.queues_ever() - set(workflow.queues)
        return self.store.reviews_with_votes_in(sorted(gone)) if gone else {}

    def _switch_version(self, text: str, filename: str, *, replace: bool, actor: str | None,
                        hold_orphans: bool) -> dict[str, Any]:
        """:meth:`apply`: check the workflow, then store it and switch to it in one transaction."""
        from rules.diagnostics import WorkflowInvalid
        from rules.workflow import compile_workflow

        workflow, diagnostics = compile_workflow(text, filename, self.functions)
        if workflow is None and self.functions is None:
            from .plugins import workflow_functions_for_text  # it may call functions that plugins register

            functions = workflow_functions_for_text(text)
            if functions:
                self.functions = functions
                workflow, diagnostics = compile_workflow(text, filename, functions)
        if workflow is None:
            from .function_hints import explained_in

            raise WorkflowInvalid(explained_in(diagnostics, text, filename))
        from .plugins import entry_diagnostics_for  # plugin entries: settings, one identity each

        entries = entry_diagnostics_for(workflow.spec, text, filename)
        if any(d.severity == "error" for d in entries):
            raise WorkflowInvalid(diagnostics + entries)
        diagnostics = diagnostics + entries
        digest = hashlib.sha256(text.encode()).hexdigest()
        actor = actor or current_user()
        previous = (self._workflow, self._workflow_id, self._queue_cache)
        try:
            return self._store_version(workflow, text, filename, digest, diagnostics, replace=replace,
                                       actor=actor, hold_orphans=hold_orphans)
        except BaseException:  # nothing was stored: the version this engine knew stays active
            self._workflow, self._workflow_id, self._queue_cache = previous
            raise

    def _store_version(self, workflow, text: str, filename: str, digest: str, diagnostics: list, *,
                       replace: bool, actor: str, hold_orphans: bool) -> dict[str, Any]:
        """:meth:`_switch_version`'s transaction: store the checked version and act on what it changes."""
        from .entry_renames import carry_over  # before the lock: nothing is imported under it
        from .lead import hold_task

        held = 0
        with self.store.transaction():
            active = self.store.active_workflow()
            if active is not None and active["name"] != workflow.name and not replace:
                raise LabelyardError(
                    f"this database runs workflow `{active['name']}`; applying `{workflow.name}` "
                    "replaces it: pass --replace (or use another database for another project)"
                )
            if active is not None and active["hash"] == digest:
                return {"workflow": workflow.name, "version": active["version"], "changed": False,
                        "warnings": [str(d) for d in diagnostics]}
            dropped = {q: n for q, n in self.store.open_count_by_queue().items() if q not in workflow.queues}
            # A correction waiting in a dropped queue is orphaned too, also when its task's `queue` names
            # another (a return to votes cast in several queues).
            elsewhere = {q: ids for q, ids in self.store.corrections_elsewhere().items() if q not in workflow.queues}
            if (dropped or elsewhere) and not hold_orphans:
                others = self._elsewhere_only(dropped, elsewhere)
                raise LabelyardError(_orphans_refused(dropped, elsewhere, others))
            now = clock.now()
            version_id = self.store.insert_workflow(workflow.name, text, workflow.spec, digest, filename, now, actor)
            version = self.store.workflow_version(version_id)["version"]
            # an entry named (or renamed) with the same plugin and target keeps its cursor, deliveries, outbox
            carried = carry_over(self.store, None if active is None else loads(active["spec"]), workflow.spec)
            self.store.add_event("workflow_applied", now, actor=actor,
                                 detail={"workflow": workflow.name, "version": version, "hash": digest,
                                         "file": filename, **({"carried": carried} if carried else {})})
            for task_id in self.store.open_task_ids_in_queues(sorted(dropped)):
                task = self.store.task(task_id)
                hold_task(self, task, now, actor,
                          f"queue `{task['queue']}` is not in version {version} of workflow `{workflow.name}`")
                held += 1
            waiting_in: dict[int, list[str]] = {}  # task id -> the dropped queues its corrections wait in
            for queue, ids in sorted(elsewhere.items()):
                for task_id in ids:
                    waiting_in.setdefault(task_id, []).append(queue)
            for task_id, queues in sorted(waiting_in.items()):
                task = self.store.task(task_id)
                if task["status"] == "open":  # not held above, its own queue dropped too
                    where, are = ("queues", "are") if len(queues) > 1 else ("queue", "is")
                    hold_task(self, task, now, actor,
                              f"corrections wait in {where} {listed(queues, quote=True)}, which {are} not in "
                              f"version {version} of workflow `{workflow.name}`")
                    held += 1
            # A gold answer that is no label of this version would score every answer wrong: held
            # (slots released) until `gold add` gives a valid answer, which reopens the question.
            held_gold: dict[str, str] = {}
            for row in self.store.open_gold_answers():
                problem = workflow.labels.problem(loads(row["label"]))
                if problem:
                    hold_task(self, self.store.task(row["id"]), now, actor,
                              f"its gold answer is no label of version {version} of workflow `{workflow.name}` "
                              f"({problem}): `labelyard gold add` it again with a valid answer")
                    held_gold[row["external_id"]] = problem
            # Gold questions are nobody's work: they wait, unused, until `gold add` moves them.
            idle_gold = {q: n for q, n in self.store.open_count_by_queue(gold=True).items()
                         if q not in workflow.queues}
            # A queue's new roles or skills drop the corrections offered to those it no longer
            # admits, as `workers set` does; decided by this version, so it is active from here.
            self._workflow, self._workflow_id, self._queue_cache = workflow, version_id, {}
            # votes marked against final labels, and gold answers, are judged again when labels
            # compare otherwise (iou…), so worker.agreement and worker.gold_accuracy use one threshold
            if compares_otherwise(None if active is None else loads(active["spec"]), workflow.labels):
                rejudge(self.store, workflow.labels)
                rescore(self, None, now, actor, {"version": version})
            dropped_corrections = [d for name in self.store.workers_with_offered_slots()
                                   for d in self._drop_corrections(name, now, actor)]
        return {"workflow": workflow.name, "version": version, "changed": True, "held_orphans": held,
                "held_gold": held_gold, "gold_in_dropped_queues": idle_gold, "carried": carried,
                "dropped_corrections": dropped_corrections, "warnings": [str(d) for d in diagnostics]}

    def _elsewhere_only(self, dropped: dict[str, int], elsewhere: dict[str, list[int]]) -> list[tuple[int, str]]:
        """The tasks (id, external id) whose corrections wait in a dropped queue while their own queue
        is one the version keeps: a ``--where`` on ``task.queue`` never finds them."""
        out = []
        for task_id in sorted({i for ids in elsewhere.values() for i in ids}):
            task = self.store.task(task_id)
            if task is not None and task["queue"] not in dropped:
                out.append((task_id, task["external_id"]))
        return out

    # -- workers ---------------------------------------------------------------------------
    def add_worker(self, name: str, roles: list[str], skills: list[str] | None = None, capacity: int | None = None,
                   actor: str | None = None) -> str:
        """Register a worker; returns ``"added"`` when new, ``"updated"`` when it changed a registered
        one, ``"unchanged"`` when a registered one already had these values (no event is written).

        An update replaces the roles; skills and capacity left ``None`` keep their stored
        values, so adding a worker again never drops what the command did not name. Roles
        or skills that no longer admit the worker to a queue drop the corrections offered to
        them there (:meth:`_drop_corrections`), in the same transaction.
        """
        return self._save_worker(name, roles, skills, capacity, False, actor, create=True)[0]

    def update_worker(self, name: str, *, roles: list[str] | None = None, skills: list[str] | None = None,
                      capacity: int | None = None, no_capacity: bool = False, flagged: bool | None = None,
                      actor: str | None = None) -> list[dict[str, Any]]:
        """Change a registered worker: what is ``None`` keeps its value; ``no_capacity`` lifts the limit;
        ``flagged`` sets or clears the flag (:meth:`set_worker_flagged`), in the same transaction.

        Returns the corrections dropped because the new roles or skills no longer admit the
        worker to their queue (:meth:`_drop_corrections`), dropped in the same transaction.
        """
        return self._save_worker(name, roles, skills, capacity, no_capacity, actor, create=False,
                                 flagged=flagged)[1]

    def set_worker_flagged(self, name: str, flagged: bool, actor: str | None = None) -> bool:
        """Flag a worker, or clear the flag (as an ``on_worker`` rule's ``flag``/``unflag`` does: their votes
        show as ``votes.any_flagged``), recorded as a ``worker_flagged``/``worker_unflagged`` event by
        ``actor``; returns False, writing nothing, when the worker already is so."""
        with self.store.transaction():
            return self._flag(self._require_worker(name), flagged, clock.now(), actor or current_user())

    def _flag(self, row: Any, flagged: bool, now: float, actor: str) -> bool:
        """Set ``row``'s worker's flag with its event, inside the caller's transaction; False when unchanged.
        The event names no ``section`` (a person did it), so replay does not take it for a rule's."""
        if bool(row["flagged"]) == flagged:
            return False
        self.store.set_worker_flagged(row["id"], flagged)
        self.store.add_event("worker_flagged" if flagged else "worker_unflagged", now, actor=actor,
                             action="flag" if flagged else "unflag", detail={"worker": row["id"]})
        return True

    def worker_warnings(self, roles: Iterable[str], skills: Iterable[str]) -> list[str]:
        """Roles and skills given to a worker that no queue of the active workflow uses (none
        without a workflow): registered all the same, as they may be for a later version."""
        if not self.load_workflow():
            return []
        return unused_by_queues(self.workflow.queues, self.workflow.name, roles, skills)

    def _save_worker(self, name: str, roles: list[str] | None, skills: list[str] | None, capacity: int | None,
                     no_capacity: bool, actor: str | None, *, create: bool,
                     flagged: bool | None = None) -> tuple[str, list[dict[str, Any]]]:
        if not name or not name.strip():
            raise LabelyardError("a worker needs a name")
        for what, text in (*(("role", r) for r in roles or ()), *(("skill", s) for s in skills or ())):
            problem = name_problem(text)
            if problem is not None:
                raise LabelyardError(f"{what} {text!r}: {problem}")
        _check_capacity(capacity)
        # New roles or skills may drop corrections, which reads the workflow: compiled before the lock.
        queues_known = (roles is not None or skills is not None) and self.load_workflow()
        now = clock.now()
        dropped: list[dict[str, Any]] = []
        with self.transaction():
            row = self.store.worker(name)
            if row is None and not create:
                self._require_worker(name)  # raises the unknown-worker error
            problem = name_problem(name) if row is None else None  # a name an older version stored stays usable
            if problem is not None:
                raise LabelyardError(f"worker name {name!r}: {problem}")
            old = None if row is None else {"roles": loads(row["roles"]), "skills": loads(row["skills"]),
                                            "capacity": row["capacity"]}
            kept = old or {"roles": [], "skills": [], "capacity": None}
            new = {"roles": kept["roles"] if roles is None else sorted(set(roles)),
                   "skills": kept["skills"] if skills is None else sorted(set(skills)),
                   "capacity": None if no_capacity else kept["capacity"] if capacity is None else capacity}
            if old and "lead" in old["roles"] and "lead" not in new["roles"] and self.store.leads() == [name]:
                raise LabelyardError(f"{name} is the only lead; make another worker a lead first")
            if new != old:  # the same again writes nothing
                actor = actor or current_user()
                self.store.upsert_worker(name, new["roles"], new["skills"], new["capacity"], now)
                self.store.add_event("worker_added" if old is None else "worker_updated", now, actor=actor,
                                     detail={"worker": name, **new, **({"was": old} if old else {})})
                if queues_known and old is not None and (new["roles"], new["skills"]) != (old["roles"], old["skills"]):
                    dropped = self._drop_corrections(name, now, actor)
            flag_changed = flagged is not None and self._flag(self.store.worker(name), flagged, now,
                                                              actor or current_user())
        changed = new != old or flag_changed
        return "added" if old is None else "updated" if changed else "unchanged", dropped

    def load_workflow(self) -> bool:
        """Compile the active workflow now, before a transaction that may need it (nothing is
        imported under the write lock); False when none was applied yet."""
        try:
            self.workflow  # noqa: B018 - loads it
        except NoWorkflow:
            return False
        return True

    def _drop_corrections(self, worker: str, now: float, actor: str, *,
                          assignment: int | None = None) -> list[dict[str, Any]]:
        """Drop the corrections offered to ``worker`` in queues they may no longer work (a lead changed
        their roles or skills, a rule took a skill, or a correction they held came back to them
        after: only that ``assignment``), inside the caller's transaction; returns what was dropped.

        Each is left out as a ``return`` (:meth:`_returnable`) or ``unhold`` leaves out a voter who
        cannot take a correction back: the slot ``expired`` and its stage asking for one submission
        fewer, with a ``correction_dropped`` event, so the task never waits on someone who cannot
        claim the slot. When that leaves the stage nothing to wait for, it ends as its last
        correction would have ended it: ``on_quorum`` on the votes kept when a correction of this
        round came in; else the task is held as a lead's ``hold`` holds it (stage and queue kept,
        ``needed`` 0 as the event says), so ``unhold`` offers it again to every voter who may take it
        back (:func:`router.lead.unhold_task`), or says to escalate.
        """
        row = self.store.worker(worker)
        if row is None:
            return []
        may = self._queues_for(row["roles"], row["skills"])
        dropped = []
        for a in self.store.offered_slots(worker):
            if a["queue"] in may or assignment not in (None, a["id"]):
                continue
            self.store.set_assignment_status(a["id"], "expired", now)
            task = self.store.task(a["task_id"])
            waits = task["status"] == "open" and task["stage"] == "correct" and task["round"] == a["round"]
            needed = max(0, task["needed"] - 1) if waits else task["needed"]
            self.store.add_event("correction_dropped", now, task_id=task["id"], actor=actor,
                                 detail={"assignment": a["id"], "worker": worker, "queue": a["queue"],
                                         "round": a["round"], "needed": needed,
                                         "reason": f"{worker} no longer works `{a['queue']}`"})
            dropped.append({"task": task["id"], "external_id": task["external_id"], "assignment": a["id"],
                            "worker": worker, "queue": a["queue"]})
            if not waits:
                continue  # a slot left behind by a task that moved on: nothing waits for it
            if needed > 0:
                # the task's `queue` names the newest correction still waiting, as a `return` set it
                waiting = [s["queue"] for s in self.store.task_slots(task["id"], ("offered", "active", "submitted"))
                           if s["stage"] == "correct" and s["round"] == task["round"]]
                queue = task["queue"] if not waiting or task["queue"] in waiting else waiting[-1]
                self.store.update_task(task["id"], needed=needed, queue=queue, updated_at=now)
            elif any(s["stage"] == "correct" and s["round"] == task["round"]
                     for s in self.store.task_slots(task["id"], ("submitted",))):
                self.store.update_task(task["id"], needed=0, updated_at=now)
                self._decide_quorum(self.store.task(task["id"]), now, actor)
            else:  # as router.lead.hold_task holds a task; naming the queues of the round's dropped corrections
                queues = sorted({s["queue"] for s in self.store.task_slots(task["id"], ("expired",))
                                 if s["stage"] == "correct" and s["round"] == task["round"]})
                reason = ("waits for corrections nobody can take back (its annotators no longer work "
                          f"{listed(queues, quote=True, last='or')})")
                self.store.update_task(task["id"], status="held", needed=0, free_slots=0, reason=reason,
                                       updated_at=now)
                self.store.add_event("held", now, task_id=task["id"], action="hold", actor=actor,
                                     detail={"reason": reason, "released": [], "stage": task["stage"],
                                             "queue": task["queue"]})
        return dropped

    def set_worker_paused(self, name: str, paused: bool, reason: str | None = None, actor: str | None = None) -> bool:
        """Pause or resume a worker; returns False, writing nothing, when that changes nothing
        (pausing a paused worker without a new reason, resuming one who is not paused)."""
        with self.store.transaction():
            row = self._require_worker(name)
            if paused and row["paused"] and reason in (None, row["pause_reason"]):
                return False
            if not paused and not row["paused"]:
                return False
            self.store.set_worker_paused(name, paused, reason)
            self.store.add_event("worker_paused" if paused else "worker_resumed", clock.now(),
                                 actor=actor or current_user(), detail={"worker": name, "reason": reason})
        return True

    def workers(self) -> list[dict[str, Any]]:
        """Every worker with roles, skills, capacity, state and current load."""
        loads_ = self.store.worker_loads()
        return [
            {"id": w["id"], "roles": loads(w["roles"]), "skills": loads(w["skills"]), "capacity": w["capacity"],
             "paused": bool(w["paused"]), "pause_reason": w["pause_reason"], "flagged": bool(w["flagged"]),
             "active": loads_.get(w["id"], 0)}
            for w in self.store.workers()
        ]

    def _require_worker(self, name: str):
        row = self.store.worker(name)
        if row is None:
            raise UnknownWorker(f"no worker `{name}`; add one with `labelyard workers add {shell_word(name)} --role annotator`")
        return row

    # -- ingest ----------------------------------------------------------------------------
    def ingest(self, rows: Iterable[TaskInput | RowProblem | None], source: str,
               progress: Callable[[int], None] | None = None, *, fork: bool = False,
               whole: bool = False, part: PartRejects | None = None, also: Sequence[str] = ()) -> IngestReport:
        """Route and store new tasks in short transactions; quarantine bad rows; skip known ids.

        ``progress`` is called after each batch with the input line reached.
        Each batch (up to 8,000 rows or 250 ms of reading) commits on its own, in
        500-row transactions while others write, so annotators claiming
        meanwhile are not starved, and a crash loses at most the batch in
        flight: running the same ingest again completes it.

        Routing and writing overlap (:mod:`router.ingest_pipeline`): with
        ``fork`` a child process reads and routes ``rows`` while this one
        writes (``rows`` must then be safe to read in a forked child, as a
        file is); otherwise, or where the fork would not be safe
        (:meth:`RoutingChild.start <router.ingest_pipeline.RoutingChild.start>`),
        a writer thread commits while this thread routes.

        Each batch replaces the source's earlier rejects on the lines it read.
        With ``whole``, ``rows`` are a whole file or stream read from its start
        (``labelyard ingest``): the batches then replace them from line 1 to
        the end of the source, lines no row starts on included (a CSV header,
        bad lines after the last good row, text after a JSON array's ``]``),
        even when no row is left. Without it, rejects outside the lines read stay.
        With ``part`` (a part a source plugin yields, read from its cursor) no lines
        are replaced: each reject is kept under its row's own key, as
        :class:`~router.ingest_pipeline.PartRejects` says. ``also``: other names of
        the same file (one an earlier version kept its rejects under), whose rejects
        on the lines read are replaced as ``source``'s are.
        """
        from .ingest_pipeline import BatchWriter, RoutingChild, ThreadedWriter

        workflow = self.workflow
        version = self.workflow_id
        path = self.store.path

        def produce() -> Iterator[RoutedBatch]:
            # In the forked child: the parent closed this store's connection before forking;
            # the child's own, opened here, takes its own SQLite locks.
            self.store.reconnect()
            return self._routed_batches(workflow, version, rows, source, whole, part)

        child = RoutingChild.start(produce, path) if fork else None
        if child is not None:
            try:
                writer = BatchWriter(path, source, part, also)  # opened after the fork: the child inherits none of it
                try:
                    for batch in child:
                        writer.write(batch)
                        if progress:
                            progress(batch.last_line)
                finally:
                    writer.close()
            finally:
                child.close()
            return writer.report
        threaded = ThreadedWriter(path, source, part, also)
        try:
            for batch in self._routed_batches(workflow, version, rows, source, whole, part):
                threaded.put(batch)
                if progress:
                    progress(batch.last_line)
        finally:
            threaded.close()
        return threaded.report

    def _routed_batches(self, workflow, version: int, rows: Iterable[TaskInput | RowProblem | None],
                        source: str, whole: bool = False, part: PartRejects | None = None) -> Iterator[RoutedBatch]:
        """Rows in batches of ``INGEST_FIRST_BATCH_ROWS``, then twice as many each time up to
        ``INGEST_BATCH_ROWS`` (or ``INGEST_BATCH_SECONDS`` of reading, or ``INGEST_BATCH_BYTES``
        of rows as read), routed; a ``None`` among ``rows`` (a stream that paused) ends the
        batch there.

        With ``whole`` (see :meth:`ingest`) the batches' line ranges leave no gap: the first
        starts at line 1, each next one after the line where the one before ended, and the
        last (an empty one if the rows ended with a full batch, or there were none) runs to
        the end of the source. A ``part`` read from its origin's start with no rows gives one
        empty batch too, which drops the origin's earlier rejects."""
        from .ingest_pipeline import RoutedBatch

        batch: list[TaskInput | RowProblem] = []
        covered = 0  # with whole: the last line the batches so far replace the rejects of
        routed = None
        size, held = INGEST_FIRST_BATCH_ROWS, 0
        started = time.monotonic()
        for row in rows:
            if row is None:  # a stream paused (router.ingest.with_pauses): commit what it gave so far
                if not batch:
                    continue
            else:
                batch.append(row)
                if row.raw is not None:
                    held += len(row.raw)
            if (row is None or len(batch) >= size or held > INGEST_BATCH_BYTES
                    or time.monotonic() - started > INGEST_BATCH_SECONDS):
                workflow, version = self._routing_version(workflow, version)
                routed = self._route_batch(workflow, version, batch, source)
                if whole:
                    routed.first_line, covered = min(covered + 1, routed.first_line or covered + 1), routed.last_line
                yield routed
                batch, held = [], 0
                size = min(size * 2, INGEST_BATCH_ROWS)
                started = time.monotonic()
        if batch:
            workflow, version = self._routing_version(workflow, version)
            routed = self._route_batch(workflow, version, batch, source)
        elif whole or (part is not None and part.from_start and routed is None):
            # nothing left to route, but the lines after the last batch (or a part's origin) to clear
            routed = RoutedBatch(now=clock.now(), problems=[], last_line=covered)
        else:
            return
        if whole:
            routed.first_line, routed.through_end = min(covered + 1, routed.first_line or covered + 1), True
        yield routed

    def _routing_version(self, workflow, version: int) -> tuple[Any, int]:
        """The version to route the next batch by: the active one (one read a batch), so rows read
        after a lead applied a version are routed by it. The writer routes again a batch that
        was routed while one was applied (:meth:`route_again`)."""
        active = self.store.active_workflow_id()
        if active is not None and active != version:
            self._follow_active(active)
            if self._workflow_id == active:
                return self.workflow, active
        return workflow, version

    def _route_batch(self, workflow, version: int, batch: list[TaskInput | RowProblem],
                     source: str) -> RoutedBatch:
        """Decide where each new row goes (``on_create``); ids are given by the writer, under the lock."""
        from .ingest import IgnoredKeys, RowProblem, TaskInput, not_finite_problem, not_json_problem
        from .ingest_pipeline import INPUT_COLUMNS, RoutedBatch, item_inputs, row_inputs, same_inputs

        now = clock.now()
        inputs = [r for r in batch if isinstance(r, TaskInput)]
        # the known ids with what a row whose id is known is compared with: the stored task's inputs
        # (read for known ids only), or those of the batch's own row with that id (its place in the
        # batch's tasks); a read, no lock
        stored = self.store.stored_inputs([t.external_id for t in inputs], INPUT_COLUMNS)
        known = set(stored)
        placed: dict[str, int] = {}
        task_tuple = operator.itemgetter(*TASK_INSERT_COLUMNS)
        routed = RoutedBatch(now=now, problems=[r for r in batch if isinstance(r, RowProblem)],
                             last_line=batch[-1].line, first_line=batch[0].line)
        labels = workflow.labels
        # a known id may be a gold question's: refused, not a silent duplicate (a query only then)
        gold = self.store.gold_external_ids(known) if known and self.store.has_gold() else ()
        ignored: dict[str, list[int]] = {}  # top-level keys rows with `data` left out: [rows, first line]
        for item in inputs:
            if item.ignored:
                for key in item.ignored:
                    if key in ignored:
                        ignored[key][0] += 1
                    else:
                        ignored[key] = [1, item.line]
            if item.external_id in known:
                if item.external_id in gold:
                    routed.problems.append(RowProblem(item.line, f"id {item.external_id} is a gold question", None,
                                                      item.external_id))
                    continue
                first = stored.get(item.external_id)
                if first is None and item.external_id in placed:
                    first = row_inputs(routed.tasks[placed[item.external_id]])
                given = item_inputs(item)
                if first == given or same_inputs(first, given):  # equal as stored: the usual re-ingest
                    routed.duplicates += 1
                else:  # the stored task is kept (ingest never changes one), but not without a word
                    routed.changed.append(item.line)
                continue
            try:
                row = self._new_task_row(item, None, source, version, now)
            except ValueError:  # NaN or an infinity, which JSON cannot carry: said where, the row kept
                routed.problems.append(not_finite_problem(item))
                continue
            except (TypeError, RecursionError):  # a plugin's row holding a Decimal, a datetime…: named
                routed.problems.append(not_json_problem(item) or not_finite_problem(item))
                continue
            problem = next(filter(None, map(text_problem, (row["external_id"], row["data"], row["category"], row["tags"],
                                                           row["pred_label"], row["pred_model"], row["pred_scores"]))),
                           None)
            if problem is not None:
                routed.problems.append(RowProblem(item.line, problem, None, item.external_id))
                continue
            problem = None if item.label is None else labels.problem(item.label)
            if problem is not None:
                routed.problems.append(RowProblem(item.line, f"`{item.label_field}`: {problem}", None,
                                                  item.external_id))
                continue
            known.add(item.external_id)
            placed[item.external_id] = len(routed.tasks)
            decision = workflow.decide("on_create", self._create_context(row, item, now))
            row.update(self._create_fields(decision, item.label, now))
            routed.tasks.append(task_tuple(row))
            # No trace here: `labelyard explain` traces on_create again from the task's input,
            # which never changes (rendering it for every row cost ~9 µs of ~25 per row).
            routed.events.append((decision.rule, decision.action, "labelyard",
                                  dumps({"line": item.line, **decision.as_detail(explained=False)}), now))
            routed.rules.append(decision.rule or "(no rule)")
        if ignored:  # told by ingest, never dropped without a word
            routed.ignored = IgnoredKeys()
            for key, (rows, line) in ignored.items():
                routed.ignored.add(key, rows, source, line)
        if len(routed.problems) > len(batch) - len(inputs):  # rows refused here join those refused when read
            routed.problems.sort(key=operator.attrgetter("line"))
        return routed

    def route_again(self, batch: RoutedBatch, version_id: int) -> None:
        """Route ``batch`` again, in place, by version ``version_id``: an ingest's writer found it
        active in the batch's transaction (applied by another process after the batch was routed
        by an older one). Run in that transaction, on the writer's connection; a prediction the
        version's labels refuse becomes a reject, as it would have when routed."""
        from .ingest import RowProblem

        self._follow_active(version_id)
        workflow = self.workflow  # this engine's first use loads the active one: ``version_id``
        task_tuple = operator.itemgetter(*TASK_INSERT_COLUMNS)
        tasks, events, rules, refused = [], [], [], False
        for task, event in zip(batch.tasks, batch.events):
            row = dict(zip(TASK_INSERT_COLUMNS, task))
            line, now = loads(event[3])["line"], row["created_at"]
            predicted = loads(row["pred_label"])
            problem = None if predicted is None else workflow.labels.problem(predicted)
            if problem is not None:
                batch.problems.append(RowProblem(line, f"`prediction.label`: {problem}", None, row["external_id"]))
                refused = True
                continue
            row.update(NEW_TASK_STATE, workflow_version=version_id)
            decision = workflow.decide("on_create", creation_context(row, stored_prediction(row), now))
            row.update(self._create_fields(decision, predicted, now))
            tasks.append(task_tuple(row))
            events.append((decision.rule, decision.action, "labelyard",
                           dumps({"line": line, **decision.as_detail(explained=False)}), now))
            rules.append(decision.rule or "(no rule)")
        batch.tasks, batch.events, batch.rules = tasks, events, rules
        if refused:
            batch.problems.sort(key=operator.attrgetter("line"))

    @staticmethod
    def _new_task_row(item: TaskInput, task_id: int | None, source: str, version: int, now: float) -> dict[str, Any]:
        return {
            **NEW_TASK_STATE, "id": task_id, "external_id": item.external_id, "source": source,
            "category": item.category, "tags": dumps(item.tags) if item.tags else "[]", "data": dumps_finite(item.data),
            "workflow_version": version,
            "pred_label": None if item.label is None else dumps_finite(item.label), "pred_confidence": item.confidence,
            "pred_model": item.model, "pred_scores": None if item.scores is None else dumps_finite(item.scores),
            "created_at": now, "updated_at": now, "stage_at": now,
        }

    @staticmethod
    def _create_context(row: dict[str, Any], item: TaskInput, now: float) -> dict[str, Any]:
        prediction = prediction_facts(item.label, item.confidence, item.model, item.scores)
        return creation_context({**row, "data": item.data, "tags": item.tags}, prediction, now)

    def _create_fields(self, decision, predicted: Any, now: float) -> dict[str, Any]:
        """Column values for a new task from its on_create decision (``predicted``: its prediction's label)."""
        if decision.action == "accept":
            label = decision.values.get("label", predicted)
            problem = self._label_problem(label)
            if problem is None:
                return {"status": "done", "final_label": dumps(final_form(label, self.workflow.labels)),
                        "final_by": "model", "final_rule": decision.rule, "final_at": now}
            decision.action, decision.reason = "hold", f"accept: {problem}"
        fields = self._stage_fields(decision, current_priority=0.0, votes_count=0)
        if fields.get("stage") is None and decision.action not in ("hold", "reject"):
            decision.action, decision.reason = "hold", f"`{decision.action}` does not apply to a new task"
            fields = self._stage_fields(decision, 0.0, 0)
        return fields

    def _label_problem(self, label: Any) -> str | None:
        if label is None:
            return "there is no label to accept"
        return self.workflow.labels.problem(label)

    def _stage_fields(self, decision, current_priority: float, votes_count: int) -> dict[str, Any]:
        """Task columns for a decision that opens a stage, holds or rejects (not accept / return)."""
        action, values = decision.action, decision.values
        if action in STAGE_OF_ACTION:
            priority = values.get("priority")
            if isinstance(priority, bool) or not isinstance(priority, (int, float)):
                priority = current_priority
            needed = 1
            if action == "annotate":
                overlap = values.get("overlap", 1)
                if isinstance(overlap, bool) or not isinstance(overlap, (int, float)):
                    overlap = 1
                needed = max(1, int(overlap) - votes_count)
            return {"status": "open", "stage": STAGE_OF_ACTION[action], "queue": decision.target,
                    "needed": needed, "free_slots": needed, "priority": float(priority),
                    "reason": values.get("reason") if action == "escalate" else None}
        if action == "reject":
            return {"status": "invalid", "stage": None, "queue": None, "needed": 0, "free_slots": 0,
                    "reason": decision.reason or "rejected by a rule"}
        # hold, or an action that does not fit here
        return {"status": "held", "needed": 0, "free_slots": 0,
                "reason": decision.reason or f"held by rule `{decision.rule}`"}

    def _queue_facts(self, queue: str | None, now: float) -> Lazy:
        def compute() -> dict[str, Any]:
            if queue is None:
                return {}
            spec = self.workflow.queues.get(queue)
            stats = {**self.store.queue_stats(queue, now), "sla": spec.sla if spec else None}
            return Lazy.keys(stats, kappa=lambda: self._queue_agreement(queue)[0],
                             alpha=lambda: self._queue_agreement(queue)[1])

        return Lazy(compute)

    def _queue_agreement(self, queue: str) -> tuple[float | None, float | None]:
        """``queue.kappa`` and ``queue.alpha`` over the queue's latest votes.

        Kept until a new annotation arrives, so routing many tasks (an ingest)
        computes them once.
        """
        newest = self.store.newest_annotation_id()
        cached = self._agreement_cache.get(queue)
        if cached is not None and cached[0] == newest:
            return cached[1]

        level = "interval" if self.workflow.labels.type == "number" else "nominal"
        window = (self.workflow.quality.get("agreement") or {}).get("window") or QUEUE_AGREEMENT_VOTES
        values = agreement_of(self.store.recent_votes(queue, window), level)
        self._agreement_cache[queue] = (newest, values)
        return values

    # -- claiming --------------------------------------------------------------------------
    def claim(self, worker: str, queue: str | None = None) -> dict[str, Any]:
        """Give ``worker`` one slot: work returned to them first, else the best slot they may take.

        Raises :class:`NothingToDo` (exit 3) when there is none. Only the
        claim itself runs under the write lock; who the worker is and which
        queues they may take are read before it, and the view is built after.
        """
        self.workflow  # noqa: B018 - compiled before the lock
        w = self.store.claimer(worker)
        if w is None:
            self._require_worker(worker)  # raises the unknown-worker error
        queues = self._claim_queues(worker, w, queue)
        version = self._workflow_id  # the queues' version: the lock may find another applied since
        now = clock.now()
        hint: int | None = None
        for attempt in range(CLAIM_ATTEMPTS):
            steps = None if attempt == CLAIM_ATTEMPTS - 1 else self.claim_walk_steps
            try:
                claimed = self._claim_in_lock(worker, queue, w, queues, now, hint, steps)
                break
            except ClaimWalkTooLong:
                if self._workflow_id != version:
                    queues, version = self._claim_queues(worker, w, queue), self._workflow_id
                # The walk past what the worker may not take, again without the lock: others
                # claim and submit meanwhile, and the next turn takes what it found, if still free.
                hint = self.store.claim_candidate(worker, queues)
                if hint is None:
                    raise NothingToDo(self._no_work(worker, queue, w)) from None
        return self._claim_view(*claimed, worker)

    def _claim_in_lock(self, worker: str, queue: str | None, w, queues: list[str], now: float,
                       hint: int | None, steps: int | None) -> tuple:
        """:meth:`claim`'s transaction: ``(assignment id, task, stage, note)`` of the slot taken.
        ``hint``: a task the walk found without the lock, taken first if still free; ``steps``:
        the walk's budget (:class:`ClaimWalkTooLong` past it, nothing written)."""
        with self.store.transaction():
            # Checked again under the lock: a lead may have paused the worker, or changed their
            # roles, skills or capacity, or applied a version (its queues and gold rate decide:
            # :meth:`transaction`, read here with the worker), while this claim waited for its turn.
            fresh = self.store.claimer_now(worker)
            switched = self._follow_active(fresh["workflow_id"])
            if switched or (fresh["paused"], fresh["roles"], fresh["skills"]) != (w["paused"], w["roles"], w["skills"]):
                queues = self._claim_queues(worker, fresh, queue)
            # Returned work counts against capacity too: a correction is a slot the worker holds.
            if fresh["capacity"] is not None and fresh["active"] >= fresh["capacity"]:
                waiting = "; work returned to them waits for their next claim" if w["has_offered"] else ""
                raise NothingToDo(f"{at_capacity(worker, fresh['active'], fresh['capacity'])}{waiting}; "
                                  f"`labelyard claim --as {worker} --resume` shows the oldest again")
            # Read before the lock: a slot offered back in between is taken at the next claim. Only in
            # the queues they may work now, as `--queue` would refuse any other.
            offered = self.store.claim_offered(worker, now, queues) if w["has_offered"] else None
            if offered is not None:
                task = self.store.task(offered["task_id"])
                self.store.add_event("claimed", now, task_id=task["id"], actor=worker,
                                     detail={"assignment": offered["id"], "stage": offered["stage"],
                                             "queue": offered["queue"]})
                return (offered["id"], task, offered["stage"], offered["note"], offered["queue"])
            slot = None
            gold_rate = (self.workflow.quality.get("gold") or {}).get("rate") or 0
            if gold_rate > 0:  # gold questions mixed into claims (router.gold)
                slot = pick_gold(self.store, worker, queues, gold_rate)
            if slot is None and hint is not None:
                slot = self.store.claim_task_slot(hint, worker, queues, now)
            if slot is None:
                slot = self.store.claim_slot(worker, queues, now, steps=steps)
            if slot is None:
                raise NothingToDo(self._no_work(worker, queue, w))
            assignment_id = self.store.insert_assignment(slot["id"], worker, slot["stage"], slot["queue"],
                                                         slot["round"], "active", now)
            self.store.add_event("claimed", now, task_id=slot["id"], actor=worker,
                                 detail={"assignment": assignment_id, "stage": slot["stage"], "queue": slot["queue"]})
            return (assignment_id, slot, slot["stage"], None, slot["queue"])

    @staticmethod
    def _no_work(worker: str, queue: str | None, w) -> str:
        elsewhere = " (work returned to them waits in another queue)" if w["has_offered"] and queue else ""
        return f"no work for {worker}" + (f" in `{queue}`{elsewhere}" if queue else "")

    def _claim_queues(self, worker: str, w, queue: str | None) -> list[str]:
        """The queues ``worker`` (their row ``w``) may claim from now, only ``queue`` when given;
        :class:`NothingToDo` when they are paused or may not take work from ``queue``."""
        if w["paused"]:
            raise NothingToDo(f"{worker} is paused" + (f": {w['pause_reason']}" if w["pause_reason"] else ""))
        return self._queues_admitting(worker, w, queue)

    def require_claim_queue(self, worker: str, queue: str) -> None:
        """Refuse ``--queue`` as ``claim --queue`` does: a queue the workflow does not have
        (:class:`LabelyardError`, exit 1) or one ``worker``'s roles and skills do not admit
        (:class:`NothingToDo`, exit 3). A pause is not refused: a lead may resume the worker."""
        self._queues_admitting(worker, self._require_worker(worker), queue)

    def _queues_admitting(self, worker: str, w, queue: str | None) -> list[str]:
        """The queues whose roles and skills admit ``worker`` (their row ``w``); only ``queue`` when
        given, refused as :meth:`require_claim_queue` says."""
        queues = self._queues_for(w["roles"], w["skills"])
        if queue is None:
            return queues
        if queue not in self.workflow.queues:
            raise LabelyardError(f"no queue `{queue}` in workflow `{self.workflow.name}`")
        if queue not in queues:
            raise NothingToDo(f"{worker} may not take work from `{queue}` (roles or skills do not match)")
        return [queue]

    def _queues_for(self, roles_json: str, skills_json: str) -> list[str]:
        """The queues a worker may take work from, by their stored roles and skills (cached per engine)."""
        key = (roles_json, skills_json)
        queues = self._queue_cache.get(key)
        if queues is None:
            queues = self._queue_cache[key] = self.workflow.queues_for(loads(roles_json), loads(skills_json))
        return queues

    def _claim_view(self, assignment_id: int, task, stage: str, note: str | None, queue: str | None,
                    worker: str) -> dict[str, Any]:
        """What a worker sees of a claimed slot, in its own ``queue`` (a correction's may differ from
        the task's). Annotation is blind: votes only for review stages."""
        view: dict[str, Any] = {
            "assignment": assignment_id, "task": task["id"], "external_id": task["external_id"], "kind": stage,
            "queue": queue, "data": loads(task["data"]), "category": task["category"],
            "choices": list(self.workflow.labels.choices), "label_type": self.workflow.labels.type,
        }
        if stage in ("review", "escalated"):
            view["prediction"] = {"label": loads(task["pred_label"]), "confidence": task["pred_confidence"]}
            view["votes"] = [{"worker": v["worker"], "label": loads(v["label"])} for v in self.store.votes(task["id"])]
            view["reviews"] = [{"worker": r["worker"], "stage": r["stage"], "verdict": r["verdict"],
                                "label": loads(r["label"]), "comment": r["comment"]}
                               for r in self.store.annotations(task["id"]) if r["stage"] in ("review", "escalated")]
        if stage == "correct":
            mine = [a for a in self.store.annotations(task["id"]) if a["stage"] in ("annotate", "correct")]
            view["comment"] = note
            view["your_label"] = next((loads(a["label"]) for a in reversed(mine) if a["worker"] == worker), None)
        return view

    # -- submitting ------------------------------------------------------------------------
    def submit(self, assignment_id: int, worker: str, *, label: Any = None, verdict: str | None = None,
               comment: str | None = None) -> dict[str, Any]:
        """Record a submission and, when the stage has its quorum or verdict, route the task.

        A slot taken back before the submission (released by a lead or a timer, expired when the
        task moved on) is not taken: the work is kept as a ``late_submission`` event, decides
        nothing, and :class:`AssignmentError` says so.
        """
        for what, value in (("the label", label), ("the comment", comment)):
            problem = text_problem(value)
            if problem is not None:
                raise AssignmentError(f"{what}: {problem}")
        try:
            return self._submit(assignment_id, worker, label=label, verdict=verdict, comment=comment)
        except AssignmentError:
            a = self.store.assignment(assignment_id)
            if a is None or a["worker"] != worker or a["status"] not in LATE_STATUSES:
                raise
            self._keep_late(a, label, verdict, comment)
            raise

    def _keep_late(self, a, label: Any, verdict: str | None, comment: str | None) -> None:
        """Keep a submission for a slot that was taken back; raises :class:`AssignmentError` saying so."""
        ref = f"assignment {a['id']} is {a['status']}, not active"
        # a mistake (a label outside the choices) is refused as for an active slot
        verdict = self._check_submission({**dict(a), "status": "active"}, a["id"], a["worker"], label, verdict)
        label = self.workflow.labels.stored(label)
        now = clock.now()
        with self.store.transaction():
            task = self.store.task(a["task_id"])
            if any(e["kind"] == "late_submission" and (loads(e["detail"]) or {}).get("assignment") == a["id"]
                   for e in self.store.events(task["id"])):
                raise AssignmentError(f"{ref}; your late submission for it is already kept")
            self.store.add_event("late_submission", now, task_id=task["id"], actor=a["worker"],
                                 detail={"assignment": a["id"], "stage": a["stage"], "round": a["round"],
                                         "slot": a["status"], "label": label, "verdict": verdict, "comment": comment})
        raise AssignmentError(f"{ref}: it was taken back before you submitted; your submission is kept in the "
                              f"history of task {task['external_id']} (`labelyard explain id:{task['id']}`) "
                              "but decides nothing; claim new work")

    def _submit(self, assignment_id: int, worker: str, *, label: Any, verdict: str | None,
                comment: str | None) -> dict[str, Any]:
        """Take an active slot's submission (see :meth:`submit`).

        The submission is checked against a read of the assignment before the
        write lock, so a mistake never queues for it; under the lock one
        ``UPDATE … RETURNING`` takes the slot only if it is still active.
        """
        now = clock.now()
        verdict = self._check_submission(self.store.assignment(assignment_id), assignment_id, worker,
                                         label, verdict)
        version = self._workflow_id
        with self.transaction():  # decided by the version active in it (:meth:`transaction`)
            if self._workflow_id != version and label is not None:  # checked by another's labels
                problem = self.workflow.labels.problem(label)
                if problem:
                    raise AssignmentError(f"{problem} (in the workflow version applied meanwhile)")
            label = self.workflow.labels.stored(label)  # a multi_choice label as a set, as final labels are
            a = self.store.finish_assignment(assignment_id, worker, now)
            if a is None:  # released, expired or submitted since the read: say which
                self._check_submission(self.store.assignment(assignment_id), assignment_id, worker, label, verdict)
                raise AssignmentError(f"assignment {assignment_id} is no longer active; claim new work")
            task = self.store.task(a["task_id"])
            stage = a["stage"]
            self.store.insert_annotation(a, label, verdict, comment, now)
            gold_correct = None
            if task["is_gold"] and label is not None:
                gold_correct = gold_answer_right(label, self.store.gold_label(task["id"]), self.workflow.labels)
            self.store.count_submission(worker, gold_correct)
            self.store.add_event("submitted", now, task_id=task["id"], actor=worker,
                                 detail={"assignment": assignment_id, "stage": stage, "label": label,
                                         "verdict": verdict, "comment": comment})
            needed = max(0, task["needed"] - 1)
            result: dict[str, Any] = {"assignment": assignment_id, "task": task["id"], "status": "submitted"}
            decide = None
            if task["is_gold"]:
                pass  # a gold answer only measures the worker; gold never reaches consensus
            elif task["status"] != "open" or task["stage"] != stage or a["round"] != task["round"]:
                pass  # the task moved on meanwhile (a lead acted); the vote is kept
            elif stage in ("annotate", "correct"):
                if needed == 0:
                    decide = lambda: self._decide_quorum(task, now, worker)  # noqa: E731
            else:
                review = review_facts({"verdict": verdict, "label": label, "comment": comment}, worker)
                decide = lambda: self._decide_review(task, review, stage, now, worker)  # noqa: E731
            if decide is None:
                self.store.update_task(task["id"], needed=needed, updated_at=now)
            else:  # the decision writes the task row once, its `needed` included
                result["decision"] = decide()
            if self.workflow.rules.get("on_worker"):
                run_on_worker(self, worker, task, assignment_id, now)
            return result

    def _check_submission(self, a, assignment_id: int, worker: str, label: Any, verdict: str | None) -> str | None:
        """Refuse a submission that cannot be taken; returns the verdict it stands for."""
        if a is None:
            raise AssignmentError(f"no assignment {assignment_id}")
        if a["worker"] != worker:
            raise AssignmentError(f"assignment {assignment_id} belongs to {a['worker']}, not {worker}")
        if a["status"] == "offered":  # a correction given back (skipped, or released by a lead): theirs again
            raise AssignmentError(f"assignment {assignment_id} is waiting for you to claim it again "
                                  f"(labelyard claim --as {worker}), then submit")
        if a["status"] != "active":
            raise AssignmentError(f"assignment {assignment_id} is {a['status']}, not active; claim new work")
        stage = a["stage"]
        if stage in ("annotate", "correct"):
            if verdict is not None:
                raise AssignmentError(f"assignment {assignment_id} is {SLOT_NAMES[stage]}: submit a --label, "
                                      "not a verdict")
            if label is None:
                raise AssignmentError("give the label with --label (or --value JSON)")
        else:
            if verdict is None:
                verdict = "approve" if label is not None or stage == "escalated" else None
            if verdict is None:
                raise AssignmentError(f"assignment {assignment_id} is {SLOT_NAMES.get(stage, f'a {stage} slot')}: "
                                      "--approve, --reject or --label")
            if stage == "escalated" and label is None and verdict == "approve":
                raise AssignmentError("an expert settles the task: give the final label with --label")
        if label is not None:
            problem = self.workflow.labels.problem(label)
            if problem:
                raise AssignmentError(problem)
        return verdict

    def _returnable(self, workers: list[str], queues: list[str | None]) -> tuple[list[dict], list[dict]]:
        """The voters who can take a correction back, each in the queue of their own vote, and those
        left out with the reason (:func:`router.returns.returnable`)."""
        return returnable(self, workers, queues)

    def _version_lacking(self, queues: Iterable[str | None]) -> tuple[Any, list[str]]:
        """The workflow version (its row) where a ``return`` would offer corrections in ``queues``, and
        the ones of them it lacks: this engine's version, or one another process applied since it
        loaded (one read, under the lock); ``(None, [])`` when it has them all (or there are none)."""
        wanted = sorted({q for q in queues if q is not None})
        version_id = self.workflow_id
        missing = [q for q in wanted if q not in self.workflow.queues]
        if wanted and not missing:
            active = self.store.active_workflow_id()
            if active is not None and active != version_id:
                names = self.store.workflow_queue_names(active)
                missing, version_id = [q for q in wanted if q not in names], active
        return (self.store.workflow_version(version_id), missing) if missing else (None, [])

    def _votes(self, task_id: int) -> dict[str, Any]:
        votes = self.store.votes(task_id)
        accuracy = self.store.gold_accuracy([v["worker"] for v in votes])
        method = self.workflow.quality.get("consensus") or "majority"
        return votes_facts(votes, accuracy, spec=self.workflow.labels, method=method, task_id=task_id,
                           history=lambda queue: self.store.recent_votes(queue, DS_HISTORY))

    def _task_context(self, task, now: float, **extra: Any) -> dict[str, Any]:
        return {"task": task_facts(task, now), "prediction": stored_prediction(task),
                "queue": self._queue_facts(task["queue"], now), "now": now, **extra}

    def _decide_quorum(self, task, now: float, actor: str) -> dict[str, Any]:
        votes = self._votes(task["id"])
        ctx = self._task_context(task, now, votes=votes)
        decision = self.workflow.decide("on_quorum", ctx)
        return self._apply(task, decision, now, actor, votes=votes, final_by="consensus", facts=decision_facts(ctx))

    def _decide_review(self, task, review: dict[str, Any], stage: str, now: float, actor: str) -> dict[str, Any]:
        votes = self._votes(task["id"])
        review = {**review, "label": self.workflow.labels.stored(review.get("label"))}  # as it is stored
        ctx = self._task_context(task, now, votes=votes, review=review)
        decision = self.workflow.decide("on_review", ctx)
        default_label = review.get("label") if review.get("label") is not None else votes["top"]
        return self._apply(task, decision, now, actor, votes=votes, final_by=FINAL_BY_STAGE.get(stage, "reviewer"),
                           default_label=default_label, comment=review.get("comment"), facts=decision_facts(ctx))

    def _apply(self, task, decision, now: float, actor: str, *, votes: dict[str, Any], final_by: str,
               default_label: Any = None, comment: str | None = None,
               facts: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Move a task as a decision says, with its event, inside the caller's transaction.

        ``facts`` (from :func:`decision_facts`) is kept in the event so ``labelyard replay``
        can run a candidate workflow on what this decision saw; ``extra`` adds keys to the
        event's detail (the timer records the round it acted in).
        """
        fields: dict[str, Any]
        returned: dict[str, Any] = {}  # a return's corrections and the voters it left out, for its event
        if decision.action == "accept":
            label = decision.values.get("label", default_label if default_label is not None else votes.get("top"))
            problem = self._label_problem(label)
            if problem is None:
                fields = {"status": "done", "stage": None, "queue": None, "needed": 0, "free_slots": 0,
                          "final_label": dumps(final_form(label, self.workflow.labels)), "final_by": final_by,
                          "final_rule": decision.rule, "final_at": now, "reason": None}
            else:
                decision.action, decision.reason = "hold", f"accept: {problem}"
                fields = self._stage_fields(decision, task["priority"], votes["count"])
        elif decision.action == "return":
            # Each voter corrects in the queue of their own counted vote. A vote cast in a queue the
            # version dropped holds the task, naming it: its annotators exist, that queue does not.
            version, gone = self._version_lacking(votes["queues"])
            offered, left_out = ([], []) if gone else self._returnable(votes["workers"], votes["queues"])
            returned = {"corrections": offered} if offered else {}
            if left_out:
                returned["left_out"] = left_out
            if not offered:
                decision.action, decision.reason = "hold", "return: no annotators to return the task to" if not gone \
                    else dropped_queue_reason(votes["workers"], votes["queues"], gone, version)
                decision.target = None  # held, not returned: `annotators` would read as where it went
                fields = self._stage_fields(decision, task["priority"], 0)
            else:  # the task's `queue`: the newest returned vote's
                fields = {"status": "open", "stage": "correct", "queue": offered[-1]["queue"],
                          "needed": len(offered), "free_slots": 0, "reason": comment}
        else:
            fields = self._stage_fields(decision, task["priority"], votes["count"])
        new_round = task["round"] + 1
        if fields.get("status") == "open":
            fields.update(round=new_round, attempts=task["attempts"] + 1, stage_at=now)
        self.store.close_open_assignments(task["id"], "expired", now)
        self.store.update_task(task["id"], updated_at=now, **fields)
        if "done" in (task["status"], fields.get("status")):  # its votes count for worker.agreement, or no more
            mark_task(self.store, task["id"], self.workflow.labels, self._workflow_id,
                      now_as=(fields.get("status", task["status"]), fields.get("final_label", task["final_label"]),
                              bool(task["is_gold"])))
        if decision.action == "return":
            for c in returned["corrections"]:
                self.store.insert_assignment(task["id"], c["worker"], "correct", c["queue"], new_round, "offered",
                                             now, note=comment)
        kind = {"accept": "final", "hold": "held", "reject": "invalid"}.get(decision.action, "routed")
        self.store.add_event(kind, now, task_id=task["id"], rule=decision.rule, action=decision.action, actor=actor,
                             detail={**decision.as_detail(), "votes": {"count": votes["count"], "top": votes["top"],
                                                                       "agreement": votes["agreement"]},
                                     **({"facts": facts} if facts else {}), **returned, **(extra or {})})
        return {"rule": decision.rule, "action": decision.action, "target": decision.target,
                "reason": decision.reason, "status": fields.get("status")}

    # -- reading ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Task counts by status and, per queue, waiting and active work; gold questions are
        counted apart (``gold``; ``gold_held`` and ``gold_retired`` of them not served), never in
        the tasks or queues. ``stalled`` and ``held`` name tasks
        that wait for ever (:mod:`router.stalls`), read at a cost that does not grow with the tasks."""
        counts = self.store.status_counts()
        tasks = {s: counts.get(s, 0) for s in ("open", "done", "held", "invalid")}
        queues, warnings = {}, []
        wf = self.store.active_workflow()
        specs = queue_specs(loads(wf["spec"])) if wf is not None else {}  # no rule compiled: no plugin needed
        workers = self.store.workers()
        admitted = crews(specs, workers)  # per queue, from the workers table: no task is read
        per_queue = self.store.queue_counts()
        for name in list(specs) + [q for q in per_queue if q not in specs]:
            q = per_queue.get(name, {})
            crew = admitted.get(name)
            queues[name] = {"waiting": q.get("waiting", 0), "active": q.get("active", 0), "open": q.get("open", 0),
                            "eligible_workers": len(crew.working) if crew else 0}
            warning = queue_warning(name, q.get("waiting", 0), specs.get(name), crew,
                                    wf["name"] if wf is not None else "")
            if warning:
                warnings.append(warning)
        rejects = self.store.one("SELECT count(*) FROM rejects")[0]
        stalls = open_stalls(self.store, specs, wf["name"] if wf is not None else "", admitted,
                             {name: q.get("open", 0) for name, q in per_queue.items()})
        gold = self.store.gold_status_counts()
        return {"workflow": None if wf is None else {"name": wf["name"], "version": wf["version"]},
                "tasks": tasks, "total": sum(counts.values()), "gold": self.store.gold_count(),
                "gold_held": gold.get("held", 0), "gold_retired": gold.get("invalid", 0),
                "queues": queues, "warnings": warnings, "stalled": stalls,
                "held": held_named(self.store, specs, tasks["held"]), "rejects": rejects,
                "workers": len(workers), "last_run": self._last_run(),
                "outbox_pending": sum(self.store.outbox_pending().values())}

    def _last_run(self) -> dict[str, Any] | None:
        """The latest ``labelyard run``: when, whether it finished, and what failed."""
        run = self.store.last_plugin_run()
        if run is None:
            return None
        result = {"id": run["id"], "started_at": clock.iso(run["started_at"]),
                  "finished": run["finished_at"] is not None, "ok": bool(run["ok"]),
                  "failures": loads(run["errors"]) or []}
        if run["finished_at"] is None:  # where it is (or was when it was killed): {step, entry, since}
            at = (loads(run["summary"]) or {}).get("in_progress") if run["summary"] else None
            if isinstance(at, dict):
                result["in_progress"] = {**at, "since": clock.iso(at.get("since"))
                                         if isinstance(at.get("since"), (int, float)) else None}
        return result

    def show(self, ref: str, viewer: str | None = None) -> dict[str, Any]:
        """Everything about one task: fields, prediction, assignments, annotations, events; read in one
        read transaction (:meth:`Store.read_transaction`), so all of one state. A gold question is
        shown whole (with its answer, ``gold``) to a lead or ``viewer=None``, and to another
        ``viewer`` as their claim gave it (:func:`router.gold_view.gold_show`)."""
        with self.store.read_transaction():
            task = self.store.task(ref)
            if task is None:
                raise UnknownTask(f"no task `{ref}` (by id or external id)")
            data = {
                "task": task_view(task),
                "prediction": stored_prediction(task),
                "assignments": [dict(a) for a in self.store.assignments(task["id"])],
                "annotations": [{**dict(a), "label": loads(a["label"])} for a in self.store.annotations(task["id"])],
                "events": [{**dict(e), "detail": loads(e["detail"])} for e in self.store.events(task["id"])],
                "stalled": task_stalled(self.store, task),
            }
            if task["is_gold"]:
                from .gold_view import gold_show

                data = gold_show(self.store, self.workflow.labels, data, viewer)
        return data

    def export_rows(self) -> Iterator[dict[str, Any]]:
        """Final labels of every done task (gold tasks left out), with what ``ingest`` reads back: the
        task's ``category``, ``tags``, ``prediction`` (``None`` when it had none) and ``data``."""
        for task in self.store.final_tasks():
            prediction = None
            if any(task[name] is not None for name in ("pred_label", "pred_confidence", "pred_model", "pred_scores")):
                prediction = {"label": loads(task["pred_label"]), "confidence": task["pred_confidence"],
                              "model": task["pred_model"], "scores": loads(task["pred_scores"])}
            yield {"id": task["external_id"], "label": loads(task["final_label"]), "final_by": task["final_by"],
                   "rule": task["final_rule"], "final_at": clock.iso(task["final_at"]),
                   "category": task["category"], "tags": loads(task["tags"]) or [], "prediction": prediction,
                   "data": loads(task["data"])}


REPLAY_FACTS = {
    "task": ("stage", "queue", "attempts", "priority", "status", "age", "stage_age"),
    "votes": ("count", "labels", "top", "top_count", "agreement", "unanimous", "tie", "entropy",
              "min_accuracy", "any_flagged"),
    "review": ("verdict", "label", "reviewer", "comment", "automatic"),
    "assignment": ("age", "worker", "kind"),
    "worker": ("id", "roles", "skills", "submitted", "gold_count", "gold_accuracy", "agreement",
               "fast_submits", "skips_in_row", "flagged"),
}


ORPHANS_NAMED = 5  # tasks an `apply` refusal names, by their corrections waiting in a dropped queue


def _orphans_refused(dropped: dict[str, int], elsewhere: dict[str, list[int]],
                     others: list[tuple[int, str]]) -> str:
    """Why ``apply`` refuses a version that drops queues with open tasks (``dropped``: by the tasks'
    queue) or with corrections waiting (``elsewhere``: tasks whose own queue names another), and
    how to move them: a ``--where`` on the dropped queues, and the tasks no such filter finds
    (``others``: id and external id, whose own queue the version keeps) by id, a few named."""
    parts = []
    for q in sorted(set(dropped) | set(elsewhere)):
        n, m = dropped.get(q, 0), len(elsewhere.get(q, ()))
        text = f"`{q}` ({n + m} open task{'s' if n + m != 1 else ''}"
        if m:
            text += f", {m} of them by the corrections waiting there"
        parts.append(text + ")")
    moves = []
    if dropped:
        where = " or ".join(f'task.queue == "{q}"' for q in sorted(dropped))
        moves.append(f"labelyard escalate --where '{where}' --to QUEUE")
    if others:
        shown = others[:ORPHANS_NAMED]
        names = listed(ext for _, ext in shown)
        if len(others) > len(shown):
            names += f" … and {len(others) - len(shown)} more (apply again names them)"
        whose = "whose own queue stays" if len(others) == 1 else "whose own queues stay"
        moves.append(f"labelyard escalate {' '.join(f'id:{i}' for i, _ in shown)} --to QUEUE for {names}, "
                     f"{whose}")
    return (f"this version drops {', '.join(parts)}: nobody could claim those tasks again. Move them first "
            f"({'; '.join(moves)}), or apply with --hold-orphans to hold them for a lead")


def decision_facts(ctx: dict[str, Any]) -> dict[str, Any]:
    """The facts of a decision that the task row does not keep, compact, for ``labelyard replay``.

    Task fields that change (stage, queue, attempts…), votes, review, assignment and
    worker facts; ``queue.*`` only when a rule read it (it costs a query). The task's
    data and prediction stay in the task row.
    """
    out: dict[str, Any] = {}
    for root, keys in REPLAY_FACTS.items():
        facts = ctx.get(root)
        if isinstance(facts, Mapping) and facts:  # a tick's task facts decode their JSON only when read
            out[root] = {k: facts[k] for k in keys if facts.get(k) is not None}
    queue = ctx.get("queue")
    if isinstance(queue, Lazy) and queue._value:
        value = queue._value
        out["queue"] = value.known() if hasattr(value, "known") else dict(value)
    return out


def task_view(task) -> dict[str, Any]:
    """A task row as plain data (JSON columns decoded)."""
    view = dict(task)
    for key in ("tags", "data", "pred_label", "pred_scores", "final_label"):
        view[key] = loads(view[key])
    view["is_gold"] = bool(view["is_gold"])
    return view


def open_engine(db: str | None = None) -> Engine:
    """An :class:`Engine` over the database at ``db`` (or ``LABELYARD_DB`` / ``./labelyard.db``)."""
    return Engine.open(db)
