"""``labelyard run``: the headless cron job over the workflow's plugins.

One run, in order: the workflow's ``sources`` are read and ingested; its
``reviewers`` judge tasks waiting in review stages; ``on_timer`` rules fire
(``router.timers``); newly final tasks go to its ``sinks``; events go to its
``notify`` entries through the outbox. Every step is safe to repeat:

- a source's cursor is stored after each part it yields has been ingested,
  and ingest skips known ids, so a part read twice creates nothing twice;
- each sink records, in one transaction with its new state, which tasks it
  received; a task is offered again only if that record is missing;
- each automatic reviewer judges a task once per round;
- notifications are queued in the outbox in the same transaction that moves
  the entry's event cursor, and marked delivered when the notifier returns.

A plugin that raises is recorded (with the entry it served) and the run goes
on with the next entry and step; what the failed call was doing is not kept
(its part is not ingested, its batch not recorded, its notification stays
queued). A file lock beside the database keeps two runs from overlapping.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import clock
from .context import review_facts, votes_facts
from .plugin_api import FinalTask, Notification, PluginError, PluginRun, ReviewItem, SourcePart, Verdict
from .plugins import Plugins, describe_error, trace
from .store import dumps, loads

SINK_BATCH = 500
REVIEW_PAGE = 200
EVENT_PAGE = 1000
RETRY_FIRST_S = 60.0
RETRY_MAX_S = 3600.0
DEFAULT_EVENTS = ("done",)


@dataclass
class Failure:
    """A plugin (or step) that failed in a run."""

    step: str
    plugin: str
    entry: str
    error: str

    def line(self) -> str:
        where = self.plugin if self.entry in (self.plugin, "") else f"{self.plugin} ({self.entry})"
        return f"{where}: {self.step} failed: {self.error}"

    def as_dict(self) -> dict[str, str]:
        return {"step": self.step, "plugin": self.plugin, "entry": self.entry, "error": self.error}


@dataclass
class RunReport:
    """What a run did, step by step, and what failed."""

    run_id: int | None = None
    steps: dict[str, Any] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "ok": self.ok, **self.steps, "failures": [f.as_dict() for f in self.failures]}


def entry_key(entry: dict[str, Any]) -> str:
    """A workflow entry's stable identity: its ``name``, else its plugin and path (or url), else a hash."""
    if entry.get("name"):
        return str(entry["name"])
    plugin = str(entry.get("plugin"))
    for setting in ("path", "url"):
        if entry.get(setting):
            return f"{plugin}:{entry[setting]}"
    rest = {k: v for k, v in entry.items() if k != "plugin"}
    if not rest:
        return plugin
    return f"{plugin}:{hashlib.sha1(dumps(rest).encode()).hexdigest()[:10]}"


# -- the lock ----------------------------------------------------------------------------
@contextmanager
def run_lock(db_path: str) -> Iterator[str | None]:
    """Hold ``DB.run-lock`` for the run; yields ``None`` when held, else who holds it.

    An OS file lock: it goes away with its process, even one killed with -9.
    """
    path = os.path.abspath(db_path) + ".run-lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o660)
    try:
        if not _try_lock(fd):
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            yield f"pid {holder}" if holder else "another process"
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield None
    finally:
        os.close(fd)  # closing releases the lock


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


# -- shared pieces -----------------------------------------------------------------------
def make_run(engine, entry: dict[str, Any], key: str, state: Any, base_dir: str) -> PluginRun:
    labels = engine.workflow.labels
    return PluginRun(plugin=str(entry.get("plugin")), key=key,
                     config={k: v for k, v in entry.items() if k != "plugin"}, state=state, base_dir=base_dir,
                     label_type=labels.type, choices=tuple(labels.choices),
                     known_ids=engine.store.existing_external_ids)


def ingest_parts(engine, parts: Iterator[SourcePart], on_cursor: Callable[[Any], None] | None = None,
                 progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Ingest each part a source yields (read in full first, so a failure mid-part keeps nothing of it)."""
    total: Counter = Counter()
    routed: Counter = Counter()
    for part in parts:
        rows = list(part.rows)
        if rows:
            report = engine.ingest(rows, part.origin, progress=progress)
            total.update(ingested=report.ingested, duplicates=report.duplicates, rejected=report.rejected)
            routed.update(report.routed)
        if part.votes:
            total["prior_votes"] += add_prior_votes(engine, part.votes, part.origin)
        if on_cursor is not None:
            on_cursor(part.cursor)
    result = {"ingested": total["ingested"], "duplicates": total["duplicates"], "rejected": total["rejected"],
              "routed": dict(routed)}
    if total["prior_votes"]:
        result["prior_votes"] = total["prior_votes"]
    return result


def add_prior_votes(engine, votes: dict[str, list[dict[str, Any]]], origin: str) -> int:
    """Record votes another tool collected as annotate submissions (see :class:`SourcePart`); returns how many.

    One transaction per task. Only open, non-gold tasks take them; a vote whose
    label the workflow refuses, or by a worker who already voted on the task,
    is left out. When the votes complete an annotate stage, ``on_quorum`` decides.
    """
    store = engine.store
    labels = engine.workflow.labels
    added = 0
    for external_id, items in votes.items():
        with store.transaction():
            task = store.task(str(external_id))
            if task is None or task["status"] != "open" or task["is_gold"]:
                continue
            now = clock.now()
            for vote in items:
                worker, label = str(vote.get("worker") or "imported"), vote.get("label")
                if label is None or labels.problem(label) or store.annotated(task["id"], worker):
                    continue
                store.ensure_worker(worker, ["imported"], now)
                assignment_id = store.insert_assignment(task["id"], worker, "annotate", task["queue"], task["round"],
                                                        "submitted", now)
                store.insert_annotation({"id": assignment_id, "task_id": task["id"], "worker": worker,
                                         "stage": "annotate", "round": task["round"]}, label, None, None, now)
                store.add_event("submitted", now, task_id=task["id"], actor=worker,
                                detail={"assignment": assignment_id, "stage": "annotate", "label": label,
                                        "prior": True, "source": origin})
                added += 1
                if task["stage"] == "annotate":
                    needed = max(0, task["needed"] - 1)
                    store.update_task(task["id"], needed=needed, free_slots=max(0, task["free_slots"] - 1),
                                      updated_at=now)
                    task = store.task(task["id"])
                    if needed == 0:
                        engine._decide_quorum(task, now, worker)
                        break
    return added


def final_task(store, row, spec=None) -> FinalTask:
    votes = store.votes(row["id"])
    facts = votes_facts(votes, {}, spec=spec)  # the label type's consensus (router.consensus), plain majority
    return FinalTask(
        task_id=row["id"], id=row["external_id"], label=loads(row["final_label"]), final_by=row["final_by"],
        rule=row["final_rule"], final_at=clock.iso(row["final_at"]), category=row["category"],
        tags=loads(row["tags"]) or [], data=loads(row["data"]) or {},
        prediction={"label": loads(row["pred_label"]), "confidence": row["pred_confidence"], "model": row["pred_model"]},
        votes=[{"worker": v["worker"], "label": loads(v["label"])} for v in votes], agreement=facts["agreement"],
    )


def review_item(store, row, engine=None) -> ReviewItem:
    votes = store.votes(row["id"])
    # with the engine: the same consensus `accept` would take (label type and quality.consensus)
    facts = engine._votes(row["id"]) if engine is not None else votes_facts(votes, {})
    return ReviewItem(
        task_id=row["id"], id=row["external_id"], queue=row["queue"], data=loads(row["data"]) or {},
        category=row["category"], tags=loads(row["tags"]) or [],
        prediction={"label": loads(row["pred_label"]), "confidence": row["pred_confidence"], "model": row["pred_model"]},
        votes=[{"worker": v["worker"], "label": loads(v["label"])} for v in votes],
        consensus=facts["top"], agreement=facts["agreement"], gold=store.gold_label(row["id"]),
    )


def apply_verdict(engine, task_id: int, round_: int, reviewer: str, verdict: Verdict | None,
                  now: float) -> dict[str, Any] | None:
    """Record an automatic reviewer's verdict (or abstention) and let ``on_review`` decide, in one transaction.

    Returns the decision, or ``None`` for an abstention or a task that moved on
    (another stage or round, or a human took its review slot) meanwhile.
    """
    store = engine.store
    worker = f"auto:{reviewer}"
    with store.transaction():
        task = store.task(task_id)
        if (task is None or task["status"] != "open" or task["stage"] != "review" or task["round"] != round_
                or task["free_slots"] < task["needed"]):
            return None
        store.add_auto_review(task_id, round_, reviewer, verdict.verdict if verdict else "abstain",
                              verdict.reason if verdict else None, now)
        if verdict is None:
            return None
        store.ensure_worker(worker, ["automatic"], now)
        assignment_id = store.insert_assignment(task_id, worker, "review", task["queue"], round_, "submitted", now)
        store.insert_annotation({"id": assignment_id, "task_id": task_id, "worker": worker, "stage": "review",
                                 "round": round_}, verdict.label, verdict.verdict, verdict.reason, now)
        store.add_event("submitted", now, task_id=task_id, actor=worker,
                        detail={"assignment": assignment_id, "stage": "review", "label": verdict.label,
                                "verdict": verdict.verdict, "comment": verdict.reason, "automatic": True,
                                "reviewer": reviewer})
        store.update_task(task_id, needed=max(0, task["needed"] - 1), updated_at=now)
        task = store.task(task_id)
        review = review_facts({"verdict": verdict.verdict, "label": verdict.label, "comment": verdict.reason},
                              worker, automatic=True)
        return engine._decide_review(task, review, "review", now, worker)


def event_names(row) -> list[str]:
    """The names a notify entry's ``events:`` can choose an event by, the most specific first."""
    kind, action = row["kind"], row["action"]
    names: list[str] = []
    if kind == "final" or (kind == "created" and action == "accept"):
        names.append("done")
    if action == "escalate":
        names.append("escalated")
    if action == "return":
        names.append("returned")
    if kind == "held" or (kind == "created" and action == "hold"):
        names.append("held")
    if kind == "invalid" or (kind == "created" and action == "reject"):
        names.append("invalid")
    names.append(kind)
    return list(dict.fromkeys(names))


def event_payload(row, name: str, workflow: str) -> dict[str, Any]:
    detail = loads(row["detail"]) or {}
    if isinstance(detail, dict):
        detail.pop("facts", None)  # the replay snapshot: large and internal
    task = None
    if row["task_id"] is not None:
        task = {"task_id": row["task_id"], "id": row["t_external_id"], "status": row["t_status"],
                "stage": row["t_stage"], "queue": row["t_queue"], "category": row["t_category"],
                "label": loads(row["t_final_label"]), "final_by": row["t_final_by"]}
    return {"event": name, "event_id": row["id"], "kind": row["kind"], "at": clock.iso(row["at"]),
            "workflow": workflow, "task": task, "rule": row["rule"], "action": row["action"],
            "actor": row["actor"], "detail": detail}


def retry_delay(attempts: int) -> float:
    """Seconds before retrying a notification that failed ``attempts`` times: 1 min, doubling, at most 1 h."""
    return min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** max(0, attempts - 1))


# -- the run -----------------------------------------------------------------------------
class Runner:
    """One ``labelyard run`` over an engine whose plugins are loaded."""

    def __init__(self, engine, plugins: Plugins, base_dir: str, echo: Callable[[str], None] | None = None):
        self.engine = engine
        self.store = engine.store
        self.plugins = plugins
        self.base_dir = base_dir
        self.echo = self._quiet_on_closed_output(echo)
        self.report = RunReport()

    @staticmethod
    def _quiet_on_closed_output(echo: Callable[[str], None] | None) -> Callable[[str], None]:
        """Progress lines must never fail a step (``labelyard run | head`` closes the pipe)."""
        def safe(message: str) -> None:
            if echo is None:
                return
            try:
                echo(message)
            except OSError:
                pass

        return safe

    def fail(self, step: str, entry: dict[str, Any] | None, error: str) -> None:
        plugin = str(entry.get("plugin")) if entry else step
        self.report.failures.append(Failure(step, plugin, entry_key(entry) if entry else "", error))

    def _registered(self, kind: str, step: str, entry: Any):
        if not isinstance(entry, dict) or not entry.get("plugin"):
            self.fail(step, None, f"an entry without `plugin:`: {entry!r}")
            return None
        found = self.plugins.get(kind, str(entry["plugin"]))
        if found is None:
            self.fail(step, entry, f"no {kind[:-1]} plugin `{entry['plugin']}` is loaded (see `labelyard plugins`)")
        return found

    def run(self) -> RunReport:
        for info in self.plugins.errors:
            self.report.failures.append(Failure("load", info.name, "", info.error or "failed"))
        with self.store.transaction():
            self.report.run_id = self.store.start_plugin_run(os.getpid(), clock.now())
        for step in (self.sources, self.reviewers, self.timers, self.sinks, self.notify):
            name = step.__name__
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - a step's own failure is recorded; the next step runs
                self.fail(name, None, describe_error(exc))
        with self.store.transaction():
            self.store.finish_plugin_run(self.report.run_id, clock.now(), self.report.ok, self.report.steps,
                                         [f.as_dict() for f in self.report.failures])
        return self.report

    # -- sources -------------------------------------------------------------------------
    def sources(self) -> None:
        done: dict[str, Any] = {}
        for entry in self.engine.workflow.sources:
            source = self._registered("sources", "sources", entry)
            if source is None:
                continue
            key = entry_key(entry)
            cursor_name = f"source:{key}"
            run = make_run(self.engine, entry, key, self.store.cursor(cursor_name), self.base_dir)

            def save(cursor: Any, _name: str = cursor_name, _run: PluginRun = run) -> None:
                with self.store.transaction():
                    self.store.set_cursor(_name, cursor, clock.now())
                _run.state = cursor

            trace(f"source {key}")
            try:
                done[key] = ingest_parts(self.engine, iter(source.func(run)), on_cursor=save)
            except Exception as exc:  # noqa: BLE001
                self.fail("sources", entry, describe_error(exc))
                continue
            self.echo(f"source {key}: ingested {done[key]['ingested']}, duplicates {done[key]['duplicates']}, "
                      f"rejected {done[key]['rejected']}")
        self.report.steps["sources"] = done

    # -- automatic reviewers -------------------------------------------------------------
    def reviewers(self) -> None:
        done: dict[str, Any] = {}
        entries = self.engine.workflow.spec.get("reviewers") or []
        for entry in entries:
            reviewer = self._registered("reviewers", "reviewers", entry)
            if reviewer is None:
                continue
            key = entry_key(entry)
            run = make_run(self.engine, entry, key, None, self.base_dir)
            queues = entry.get("queues") or None
            counts: Counter = Counter()
            after = 0
            try:
                while rows := self.store.review_candidates(key, queues, after, REVIEW_PAGE):
                    for row in rows:
                        after = row["id"]
                        trace(f"reviewer {key}: task {row['external_id']}")
                        verdict = reviewer.func(run, review_item(self.store, row, self.engine))
                        if verdict is not None and not isinstance(verdict, Verdict):
                            raise PluginError(f"returned {verdict!r}; expected approve(...), reject(...) or None")
                        if verdict is not None and verdict.label is not None:
                            problem = self.engine.workflow.labels.problem(verdict.label)
                            if problem:
                                raise PluginError(f"corrected label is invalid: {problem}")
                        decision = apply_verdict(self.engine, row["id"], row["round"], key, verdict, clock.now())
                        counts[verdict.verdict if verdict else "abstain"] += 1
                        if decision:
                            counts[f"→ {decision['action']}"] += 1
            except Exception as exc:  # noqa: BLE001
                self.fail("reviewers", entry, describe_error(exc))
            done[key] = dict(counts)
            if counts:
                self.echo(f"reviewer {key}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        self.report.steps["reviewers"] = done

    # -- timers --------------------------------------------------------------------------
    def timers(self) -> None:
        import importlib.util

        if importlib.util.find_spec("router.timers") is None:
            self.report.steps["timers"] = None
            return
        from . import timers

        result = timers.tick(self.engine)
        data = result.as_dict() if hasattr(result, "as_dict") else result
        self.report.steps["timers"] = data
        if isinstance(data, dict):
            actions = data.get("actions") or {}
            released = data.get("released") or 0
            if actions or released:
                self.echo(f"timers: released {released}" + "".join(f", {k} {v}" for k, v in actions.items()))

    # -- sinks ---------------------------------------------------------------------------
    def sinks(self) -> None:
        done: dict[str, Any] = {}
        for entry in self.engine.workflow.sinks:
            sink = self._registered("sinks", "sinks", entry)
            if sink is None:
                continue
            key = entry_key(entry)
            cursor_name = f"sink:{key}"
            batch = int(entry.get("batch") or SINK_BATCH)
            run = make_run(self.engine, entry, key, self.store.cursor(cursor_name), self.base_dir)
            delivered = 0
            try:
                if not self.store.has_cursor(cursor_name):
                    trace(f"sink {key}: start")
                    state = sink.func(run, [])
                    with self.store.transaction():
                        self.store.set_cursor(cursor_name, state, clock.now())
                    run.state = state
                after = 0
                while rows := self.store.undelivered_final_tasks(key, after, batch):
                    tasks = [final_task(self.store, row, self.engine.workflow.labels) for row in rows]
                    trace(f"sink {key}: {len(tasks)} task(s)")
                    state = sink.func(run, tasks)
                    with self.store.transaction():
                        self.store.record_deliveries(key, [(r["id"], r["final_at"]) for r in rows], clock.now())
                        self.store.set_cursor(cursor_name, state, clock.now())
                    run.state = state
                    delivered += len(rows)
                    after = rows[-1]["id"]
            except Exception as exc:  # noqa: BLE001
                self.fail("sinks", entry, describe_error(exc))
            done[key] = {"delivered": delivered}
            if delivered:
                self.echo(f"sink {key}: delivered {delivered}")
        self.report.steps["sinks"] = done

    # -- notifications -------------------------------------------------------------------
    def notify(self) -> None:
        done: dict[str, Any] = {}
        workflow = self.engine.workflow.name
        for entry in self.engine.workflow.notify:
            notifier = self._registered("notifiers", "notify", entry)
            if notifier is None:
                continue
            key = entry_key(entry)
            wanted = entry.get("events") or list(DEFAULT_EVENTS)
            wanted = [wanted] if isinstance(wanted, str) else [str(w) for w in wanted]
            queued = self._enqueue(key, wanted, workflow)
            run = make_run(self.engine, entry, key, None, self.base_dir)
            delivered, pending = self._deliver(entry, key, run, notifier)
            done[key] = {"queued": queued, "delivered": delivered, "pending": pending}
            if queued or delivered or pending:
                self.echo(f"notify {key}: queued {queued}, delivered {delivered}, waiting {pending}")
        self.report.steps["notify"] = done

    def _enqueue(self, key: str, wanted: list[str], workflow: str) -> int:
        """Queue the entry's new events; the cursor moves in the same transaction."""
        cursor_name = f"notify:{key}"
        after = self.store.cursor(cursor_name)
        if after is None:
            # a new entry hears what happened since the workflow that added it was applied
            after = max(0, self.store.last_event_id("workflow_applied") - 1)
        queued = 0
        while rows := self.store.events_after(int(after), EVENT_PAGE):
            now = clock.now()
            batch = []
            for row in rows:
                names = event_names(row)
                name = next((n for n in names if n in wanted), "*" if "*" in wanted else None)
                if name is None:
                    continue
                name = names[0] if name == "*" else name
                body = json.dumps(event_payload(row, name, workflow), ensure_ascii=False, separators=(",", ":"))
                batch.append((key, row["id"], name, body, now))
            after = rows[-1]["id"]
            with self.store.transaction():
                self.store.enqueue_outbox(batch)
                self.store.set_cursor(cursor_name, after, now)
            queued += len(batch)
        return queued

    def _deliver(self, entry: dict[str, Any], key: str, run: PluginRun, notifier) -> tuple[int, int]:
        delivered = 0
        while rows := self.store.outbox_next(key, 100):
            for row in rows:
                if row["next_at"] > clock.now():  # backing off: it, and everything after it, waits
                    return delivered, self.store.outbox_pending().get(key, 0)
                note = Notification(delivery=row["id"], event=row["event"], payload=json.loads(row["body"]),
                                    body=row["body"].encode("utf-8"), attempt=row["attempts"] + 1)
                trace(f"notify {key}: delivery {row['id']} ({row['event']})")
                try:
                    notifier.func(run, note)
                except Exception as exc:  # noqa: BLE001
                    error = describe_error(exc)
                    now = clock.now()
                    with self.store.transaction():
                        self.store.outbox_failed(row["id"], error, now + retry_delay(row["attempts"] + 1))
                    pending = self.store.outbox_pending().get(key, 0)
                    self.fail("notify", entry, f"{error}; {pending} notification(s) kept in the outbox for the next run")
                    return delivered, pending
                with self.store.transaction():
                    self.store.outbox_delivered(row["id"], clock.now())
                delivered += 1
        return delivered, self.store.outbox_pending().get(key, 0)


def open_for_run(db: str | None, plugins_dir: str | None):
    """The engine and plugins for a database: its workflow's ``plugins:`` loaded, their functions in the engine."""
    from .engine import Engine
    from .errors import NoWorkflow
    from .plugins import load_plugins
    from .store import Store

    store = Store.open(db)
    row = store.active_workflow()
    if row is None:
        raise NoWorkflow("no workflow applied yet; run `labelyard apply FILE.workflow.yaml`")
    modules = loads(row["spec"]).get("plugins") or []
    plugins = load_plugins(modules, plugins_dir)
    return Engine(store, functions=plugins.functions or None), plugins


def base_dir_of(store) -> str:
    """Where a workflow's relative paths start: the database's folder."""
    return os.path.dirname(os.path.abspath(store.path))
