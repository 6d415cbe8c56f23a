"""Read-only views for the TUI (and anything else that watches a project): dashboard, task
pages, task detail, worker roster, workflow rules.

Everything here reads through :class:`router.store.Store` and changes nothing.
The numbers a dashboard refreshes every second come from counters kept by
triggers (migration ``m004``) and from short index range reads, never from a
``count(*)`` over all tasks; the costly statistics (agreement, which reads every
vote) are a separate call (:meth:`Queries.slow_stats`) that a screen runs
rarely. Task lists page by keyset (:class:`TaskFilter`, ``after``), never by
``OFFSET``, so page 20,000 costs what page 1 costs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from . import clock
from .store import Store, loads

HOUR = 3600
BREACH_CAP = 10_000  # SLA breaches are counted up to this many per queue ("10000+")
PAGE_SIZE = 50
SEARCH_ROWS = 100_000
"""Tasks a page of a text search reads at most (~50-130 ms of CPU): when its matches are rarer, the page
shows those it found and the next page searches on from there."""
SEARCH_STEP = 10_000
"""Tasks a search reads between two calls of its ``progress`` (which may stop it)."""
TASK_STATUSES = ("open", "held", "done", "invalid")
STAGES = ("annotate", "review", "correct", "escalated")
ORDERS = ("id", "priority", "age", "updated")
KEYED_SECTIONS = frozenset({"on_timer"})
"""Sections whose events carry their rule's key (``router.timers``); the others' are counted by rule name."""


def rule_identity(section: str, rule: Any) -> str:
    """How ``rule_counts`` knows a compiled rule: its key in :data:`KEYED_SECTIONS`, else its name."""
    return (rule.key or rule.name) if section in KEYED_SECTIONS else rule.name


@dataclass(frozen=True)
class TaskFilter:
    """What the task list shows: filters (``None`` = any) and the sort."""

    status: str | None = None
    queue: str | None = None  # "" = tasks without a queue
    stage: str | None = None
    worker: str | None = None
    text: str | None = None
    order: str = "id"
    descending: bool = True

    def with_(self, **changes: Any) -> "TaskFilter":
        return replace(self, **changes)

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in (("status", self.status), ("queue", self.queue), ("stage", self.stage),
                                         ("worker", self.worker), ("text", self.text)) if v not in (None, "")]
        if self.queue == "":
            parts.append("queue=(none)")
        arrow = "↓" if self.descending else "↑"
        return (" ".join(parts) or "all tasks") + f"  sort {self.order}{arrow}"


@dataclass
class TaskPage:
    """One page of tasks and the keys to the next one."""

    rows: list[dict[str, Any]]
    next_after: tuple[Any, int] | None  # None: this is the last page
    total: int | None  # from the counters when the filter allows it, else None
    first_key: tuple[Any, int] | None = None  # its first row's (sort value, id): task_page_above reads from it
    searched: int | None = None  # a text search that found less than a page: how many tasks it read (<= SEARCH_ROWS)


class SearchStopped(Exception):
    """A search's ``progress`` asked it to stop (the list asked for another page meanwhile)."""


Progress = Callable[[int, int], bool]
"""``progress(read, found)``: how many tasks a search read so far and how many matched; ``False`` stops it."""


@dataclass
class _Scan:
    """What a bounded search read: the matches' keys, how many tasks it read (``None``: it stopped at
    the match it wanted), the keys of the first and the last one, and whether it reached the end of
    the list."""

    hits: list[tuple[Any, int]]
    read: int | None
    first: tuple[Any, int] | None
    last: tuple[Any, int] | None
    ended: bool


def _label(text: str | None) -> Any:
    """A stored label; a plain JSON string (the common case) without the JSON parser."""
    if text is None:
        return None
    if len(text) > 1 and text[0] == '"' and text[-1] == '"' and "\\" not in text and '"' not in text[1:-1]:
        return text[1:-1]
    return loads(text)


SORT_COLUMNS = {"id": None, "priority": "priority", "age": "stage_at", "updated": "updated_at"}
AGAINST_COLUMN = frozenset({"age"})
"""Orders whose figure runs against their column: the oldest task (largest age, shown first by
``age↓``) is the one with the smallest ``stage_at``."""


def _column_descending(order: str, descending: bool) -> bool:
    """Whether the store sorts ``order``'s column descending for a list ``descending`` by its figure."""
    return descending != (order in AGAINST_COLUMN)


def _sort_key(order: str, row: Any) -> tuple[Any, int]:
    """A task row's keyset position ``(sort value, id)`` in a list sorted by ``order``."""
    column = SORT_COLUMNS[order]
    return (None if column is None else row[column], row["id"])


def _task_rows(rows: list[Any]) -> list[dict[str, Any]]:
    if not rows:
        return []
    keys = rows[0].keys()
    out = []
    for r in rows:
        row = dict(zip(keys, r))
        row["pred_label"] = _label(row["pred_label"])
        row["final_label"] = _label(row["final_label"])
        row["holders"] = loads(row["holders"]) or []  # a JSON list: the names whole (`a,b` is one worker)
        out.append(row)
    return out


class Queries:
    """Read-only questions about one project, over a :class:`Store` (one per thread)."""

    def __init__(self, store: Store, engine: Any = None):
        self.store = store
        self._engine = engine

    @classmethod
    def open(cls, db: str | None = None) -> "Queries":
        return cls(Store.open(db))

    def close(self) -> None:
        self.store.close()

    @property
    def engine(self):
        if self._engine is None:
            from .engine import Engine

            self._engine = Engine(self.store)
        return self._engine

    def data_version(self) -> int:
        """A number that changes when another connection commits: poll it, reload when it moved. It
        means something only on the connection that read it before."""
        return self.store.data_version()

    def change_marker(self) -> tuple[Any, ...]:
        """What changed data looks like from a new connection each time (where :meth:`data_version`
        is meaningless): the newest event, rejected row and plugin run."""
        return self.store.change_marker()

    # -- the workflow -----------------------------------------------------------------------
    def workflow_info(self) -> dict[str, Any] | None:
        row = self.store.active_workflow()
        if row is None:
            return None
        wf = self.engine.workflow
        return {"name": wf.name, "version": row["version"], "description": wf.description,
                "label_type": wf.labels.type, "choices": list(wf.labels.choices),
                "queues": {name: {"roles": list(q.roles), "skills": list(q.skills), "sla": q.sla}
                           for name, q in wf.queues.items()},
                "agreement": wf.quality.get("agreement") or {}}

    def workflow_rules(self) -> dict[str, Any]:
        """Every rule of the active workflow, section by section, with how often it fired.

        Counts are per rule identity (``rule_counts.rule_key``): an unnamed ``on_timer`` rule is known by
        its ``when`` and ``do`` (its events carry that key), not by the place it is shown by, which a rule
        inserted before it shifts; other rules by their name.
        """
        fired: dict[tuple[str, str], dict[str, Any]] = {}
        for r in self.store.rule_count_rows():
            fired[(r["section"], r["rule_key"])] = {"rule": r["rule"], "n": r["n"], "last_at": r["last_at"]}
        wf = self.engine.workflow
        sections = []
        known = set()
        for section, rules in wf.rules.items():
            items = []
            for rule in rules:
                identity = (section, rule_identity(section, rule))
                hit = fired.get(identity, {})
                known.add(identity)
                items.append({"name": rule.name, "when": None if rule.when is None else getattr(rule.when, "source", None),
                              "action": rule.action.kind, "target": rule.action.target, "line": rule.line,
                              "builtin": rule.builtin, "fired": hit.get("n", 0),
                              "last_at": clock.iso(hit.get("last_at"))})
            sections.append({"section": section, "rules": items})
        # Rules that fired under an earlier version and are gone now, by the name they had when they last fired.
        retired = [{"section": s, "rule": v["rule"], "rule_key": key, "fired": v["n"],
                    "last_at": clock.iso(v["last_at"])}
                   for (s, key), v in sorted(fired.items(), key=lambda kv: (kv[0][0], kv[1]["rule"], kv[0][1]))
                   if (s, key) not in known]
        return {"workflow": self.workflow_info(), "sections": sections, "retired": retired,
                "yaml": self.store.active_workflow()["yaml"]}

    # -- counts ---------------------------------------------------------------------------
    def counts(self) -> dict[str, Any]:
        """Task counts by status, and per queue (open, waiting = claimable, by stage), from the counters."""
        by_status = {s: 0 for s in TASK_STATUSES}
        queues: dict[str, dict[str, Any]] = defaultdict(lambda: {"open": 0, "waiting": 0, "held": 0, "stages": {}})
        gold = 0
        for r in self.store.task_count_rows():
            if r["is_gold"]:
                gold += r["n"]
                continue
            by_status[r["status"]] = by_status.get(r["status"], 0) + r["n"]
            if r["queue"] and r["status"] == "open":
                q = queues[r["queue"]]
                q["open"] += r["n"]
                q["waiting"] += r["n"] if r["claimable"] else 0
                q["stages"][r["stage"]] = q["stages"].get(r["stage"], 0) + r["n"]
            elif r["queue"] and r["status"] == "held":
                queues[r["queue"]]["held"] += r["n"]
        return {"tasks": by_status, "total": sum(by_status.values()), "gold": gold, "queues": dict(queues)}

    def count_for(self, f: TaskFilter) -> int | None:
        """How many tasks a filter matches, when the counters can say (no worker or text filter)."""
        if f.worker or f.text:
            return None
        total = 0
        for r in self.store.task_count_rows():
            if r["is_gold"]:
                continue
            if f.status is not None and r["status"] != f.status:
                continue
            if f.queue is not None and r["queue"] != f.queue:
                continue
            if f.stage is not None and r["stage"] != f.stage:
                continue
            total += r["n"]
        return total

    # -- the dashboard --------------------------------------------------------------------
    def dashboard(self, now: float | None = None, hours: int = 24) -> dict[str, Any]:
        """What the dashboard shows, cheap enough to reload every second at a million tasks."""
        now = clock.now() if now is None else now
        info = self.workflow_info()
        counts = self.counts()
        loads_ = self.store.worker_loads()
        active_by_queue = self._active_by_queue()
        queue_specs = (info or {}).get("queues", {})
        queues = []
        for name in list(queue_specs) + sorted(q for q in counts["queues"] if q not in queue_specs):
            c = counts["queues"].get(name, {"open": 0, "waiting": 0, "held": 0, "stages": {}})
            sla = (queue_specs.get(name) or {}).get("sla")
            oldest = self.store.oldest_open(name)
            breaches = 0 if sla is None else self.store.open_older_than(name, now - sla, BREACH_CAP)  # 0s is an SLA
            queues.append({"name": name, "open": c["open"], "waiting": c["waiting"], "held": c["held"],
                           "active": active_by_queue.get(name, 0), "stages": c["stages"],
                           "oldest_age": None if oldest is None else now - oldest, "sla": sla,
                           "breaches": breaches, "breaches_capped": breaches >= BREACH_CAP})
        throughput = self.throughput(now, hours)
        workers = self.worker_rows(now, loads_=loads_, with_agreement=False)
        last_run = self.store.last_plugin_run()
        alerts = []
        for q in queues:
            if q["breaches"]:
                more = "+" if q["breaches_capped"] else ""
                alerts.append({"level": "error", "text": f"{q['name']}: {q['breaches']}{more} task(s) past the "
                                                          f"{_duration(q['sla'])} SLA"})
        if counts["tasks"].get("held"):
            alerts.append({"level": "warning", "text": f"{counts['tasks']['held']} task(s) held"})
        for w in workers:
            if w["paused"]:
                alerts.append({"level": "warning", "text": f"{w['id']} is paused" +
                               (f": {w['pause_reason']}" if w["pause_reason"] else "")})
            if w["flagged"]:
                alerts.append({"level": "warning", "text": f"{w['id']} is flagged"})
        if last_run is not None and last_run["finished_at"] is not None and not last_run["ok"]:
            alerts.append({"level": "error", "text": f"last `labelyard run` ({clock.iso(last_run['started_at'])}) "
                                                     "had plugin failures"})
        rejects = self.store.reject_count()
        if rejects:
            alerts.append({"level": "warning", "text": f"{rejects} input row(s) rejected (labelyard rejects)"})
        return {"now": now, "workflow": info, "counts": counts, "queues": queues, "workers": workers,
                "throughput": throughput, "alerts": alerts, "rejects": rejects}

    def _active_by_queue(self) -> dict[str, int]:
        return self.store.active_by_queue()

    def throughput(self, now: float, hours: int = 24) -> dict[str, Any]:
        """Per clock hour over the last ``hours``: tasks created, submissions, final labels, in
        ``hours + 1`` buckets (:func:`first_hour`): the oldest is the hour that holds ``now - hours``."""
        first = first_hour(now, hours)
        buckets = hours + 1
        series = {k: [0] * buckets for k in ("created", "submitted", "final")}
        for r in self.store.activity_rows(first):
            i = r["hour"] - first
            if 0 <= i < buckets and r["kind"] in series:
                series[r["kind"]][i] += r["n"]
        return {"first_hour": first * HOUR, "hours": buckets, **series}

    # -- workers --------------------------------------------------------------------------
    def worker_rows(self, now: float | None = None, *, loads_: dict[str, int] | None = None,
                    with_agreement: bool = True, hours: int = 24) -> list[dict[str, Any]]:
        """The roster: roles, skills, state, load, submissions in the last ``hours``, gold accuracy and
        (``with_agreement``) agreement with final labels, from the sums kept on each worker row."""
        now = clock.now() if now is None else now
        loads_ = self.store.worker_loads() if loads_ is None else loads_
        since = first_hour(now, hours)
        recent: dict[str, int] = defaultdict(int)
        for r in self.store.activity_rows(since):
            if r["kind"] == "submitted":
                recent[r["actor"]] += r["n"]
        gold = self.store.gold_answers()
        rows = []
        for w in self.store.workers():
            answered, correct = gold.get(w["id"], (0, 0))
            row = {"id": w["id"], "roles": loads(w["roles"]), "skills": loads(w["skills"]),
                   "capacity": w["capacity"], "paused": bool(w["paused"]), "pause_reason": w["pause_reason"],
                   "flagged": bool(w["flagged"]), "active": loads_.get(w["id"], 0),
                   "submitted_recent": recent.get(w["id"], 0), "gold_answered": answered,
                   "gold_accuracy": (correct / answered) if answered else None, "agreement": None, "decided": None}
            if with_agreement:  # the sums kept on the worker row as tasks finish (router.vote_agreement)
                decided, matched = w["final_votes"], w["final_agreed"]
                row["decided"] = decided
                row["agreement"] = (matched / decided) if decided else None
            rows.append(row)
        return rows

    def slow_stats(self) -> dict[str, Any]:
        """Agreement per queue (coloured by the workflow's bands) and per annotator: reads every vote,
        so screens call it rarely (on open, then every 30 s), never on each refresh."""
        from .agreement import agreement_report

        report = agreement_report(self.engine)
        return {"metric": report["metric"], "bands": report["bands"], "overall": report["overall"],
                "queues": report["queues"],
                "annotators": {a["worker"]: a for a in report["annotators"]}}

    def reassign_candidates(self, task_refs: list[str]) -> list[dict[str, Any]]:
        """Every worker with their load and, for these tasks, whether they may take them and why not,
        by the checks of ``labelyard reassign`` itself (:func:`router.lead.reassign_refusal`, then
        :func:`router.lead.ineligible`): ``eligible``, ``reason`` and ``forceable`` (``--force``
        would do it; ``False`` for a worker who already holds or submitted a slot of the task).
        Raises :class:`LabelyardError` with the reason when a task cannot be reassigned to anyone
        (a ``correct`` stage, a task not open)."""
        from .errors import LabelyardError
        from .lead import ineligible, reassign_refusal

        tasks = [t for t in (self.store.task(ref) for ref in task_refs) if t is not None]
        for t in tasks:
            refused = reassign_refusal(self.store, t)
            if refused:
                raise LabelyardError(refused)
        loads_ = self.store.worker_loads()
        out = []
        for w in self.store.workers():
            if "automatic" in loads(w["roles"]) or "imported" in loads(w["roles"]):
                continue
            refusals = [r for r in (reassign_refusal(self.store, t, w["id"]) for t in tasks) if r]
            problems = refusals + [p for p in (ineligible(self.engine, t, w) for t in tasks) if p]
            out.append({"id": w["id"], "roles": loads(w["roles"]), "active": loads_.get(w["id"], 0),
                        "capacity": w["capacity"], "paused": bool(w["paused"]),
                        "eligible": not problems, "reason": problems[0] if problems else None,
                        "forceable": not refusals})
        out.sort(key=lambda r: (not r["eligible"], not r["forceable"], r["active"], r["id"]))
        return out

    # -- tasks ----------------------------------------------------------------------------
    def task_page(self, f: TaskFilter, after: tuple[Any, int] | None = None, limit: int = PAGE_SIZE,
                  with_total: bool = True, progress: Progress | None = None) -> TaskPage:
        """One page of tasks by keyset: pass the previous page's ``next_after`` to get the next.

        With a search text the page reads at most :data:`SEARCH_ROWS` tasks, calling ``progress`` every
        :data:`SEARCH_STEP` of them (:class:`SearchStopped` when it says stop): a page whose matches
        are rare holds those found in that stretch (``searched`` says how many tasks it read), and
        its ``next_after`` (the last task read) searches on."""
        if f.text:
            return self._search_page(f, after, limit, progress)
        rows = self._task_page_rows(f, after, limit + 1)
        more = len(rows) > limit
        rows = _task_rows(rows[:limit])
        next_after = _sort_key(f.order, rows[-1]) if more and rows else None
        first_key = _sort_key(f.order, rows[0]) if rows else None
        return TaskPage(rows, next_after, self.count_for(f) if with_total else None, first_key)

    def _search_page(self, f: TaskFilter, after: tuple[Any, int] | None, limit: int,
                     progress: Progress | None) -> TaskPage:
        scan = self._scan(f, after, limit + 1, SEARCH_ROWS, f.descending, progress)
        hits = scan.hits[:limit]
        rows = _task_rows(self.store.task_rows([i for _, i in hits]))
        if len(scan.hits) > limit:
            next_after = hits[-1]
        else:
            next_after = None if scan.ended else scan.last
        return TaskPage(rows, next_after, None, scan.first, scan.read)  # `p` reads above the first task read

    def _scan(self, f: TaskFilter, after: tuple[Any, int] | None, want: int, rows: int, descending: bool,
              progress: Progress | None) -> _Scan:
        """Read the list (``f`` without its text, in ``descending`` order) after ``after``, at most
        ``rows`` tasks, until ``want`` of them match the text; :data:`SEARCH_STEP` tasks a statement,
        with ``progress`` told after each."""
        plain = f.with_(text=None)
        head = self._task_page_rows(plain, after, 1, descending=descending)
        scan = _Scan([], 0, _sort_key(f.order, head[0]) if head else None, after, not head)
        while scan.read is not None and scan.read < rows and not scan.ended:
            hits, read, last = self.store.task_search(
                **self._filter_args(f), order=f.order, descending=_column_descending(f.order, descending),
                after=scan.last, rows=min(SEARCH_STEP, rows - scan.read), want=want - len(scan.hits))
            scan = _Scan(scan.hits + hits, None if read is None else scan.read + read, scan.first, last,
                         read is not None and last is None)
            if scan.read is not None and not scan.ended and progress is not None \
                    and not progress(scan.read, len(scan.hits)):
                raise SearchStopped()
        if scan.read is not None and not scan.ended:
            # ``rows`` read, the last of them perhaps the list's last: whether a task follows it (one
            # row by keyset), so that a stretch that ended the list is not offered as "n searches on"
            # to an empty page
            after_last = self._task_page_rows(plain, scan.last, 1, descending=descending)
            scan = _Scan(scan.hits, scan.read, scan.first, scan.last, not after_last)
        return scan

    def _task_page_rows(self, f: TaskFilter, after: tuple[Any, int] | None, limit: int,
                        descending: bool | None = None) -> list[Any]:
        descending = f.descending if descending is None else descending
        return self.store.task_page(**self._filter_args(f), order=f.order,
                                    descending=_column_descending(f.order, descending), after=after, limit=limit)

    @staticmethod
    def _filter_args(f: TaskFilter) -> dict[str, Any]:
        return {"status": f.status, "queue": f.queue, "stage": f.stage, "worker": f.worker, "text": f.text or None}

    def task_page_above(self, f: TaskFilter, first_key: tuple[Any, int] | None, limit: int = PAGE_SIZE,
                        progress: Progress | None = None) -> tuple[tuple[Any, int] | None, TaskPage]:
        """The page just above the row at ``first_key`` (a page's ``first_key``; ``None``: above the end
        of the list, its last rows) and the ``after`` that reads it again (``None``: the first page,
        when fewer than ``limit`` rows come before). By keyset backwards, so it is the ``limit`` rows
        before that row as they are now, wherever tasks were added or moved meanwhile. A search reads
        back at most :data:`SEARCH_ROWS` tasks, as its pages read forward."""
        if f.text:
            scan = self._scan(f, first_key, limit + 1, SEARCH_ROWS + 1, not f.descending, progress)
            after = scan.hits[limit] if len(scan.hits) > limit else None if scan.ended else scan.last
            return after, self.task_page(f, after, limit, progress=progress)
        before = self._task_page_rows(f, first_key, limit + 1, descending=not f.descending)
        after = _sort_key(f.order, before[limit]) if len(before) > limit else None
        return after, self.task_page(f, after, limit)

    def task_page_at(self, f: TaskFilter, task_id: int, row: int, limit: int = PAGE_SIZE,
                     progress: Progress | None = None
                     ) -> tuple[tuple[Any, int] | None, TaskPage, int | None] | None:
        """The page that shows task ``task_id`` as its ``row``-th row (nearer the top when fewer tasks
        come before it), the ``after`` that reads that page again (``None``: the first page), and how
        many rows come before the page (its page number; ``None`` for a search, which does not count
        them); ``None`` when ``f`` no longer lists the task.
        For a list that keeps a task under the cursor while tasks ingested (or moved) above it push
        it off its page. The count reads every row above the page (~0.15 s 500,000 rows deep sorted
        by id, about one more page sorted by priority): call this only when the task left its page."""
        task = self.store.task(task_id)
        if task is None:
            return None
        row = max(0, min(row, limit - 1))
        key = _sort_key(f.order, task)
        if f.text:  # read back at most a search page's stretch, less the page, so the page reaches the task
            scan = self._scan(f, key, row + 1, max(1, SEARCH_ROWS - limit), not f.descending, progress)
            after = scan.hits[row] if len(scan.hits) > row else None if scan.ended else scan.last
        else:
            # The rows before it, nearest first, and one more: the row just before the page, its `after`.
            before = self._task_page_rows(f, key, row + 1, descending=not f.descending)
            after = _sort_key(f.order, before[row]) if len(before) > row else None
        page = self.task_page(f, after, limit, progress=progress)
        if all(r["id"] != task_id for r in page.rows):
            return None  # gone from the list (a status, queue or text that no longer matches), or gold
        if after is None:
            return None, page, 0
        if f.text:
            return after, page, None
        # `after` read backwards: the rows before it, and the `after` row itself
        count = self.store.task_count_after(**self._filter_args(f), order=f.order,
                                            descending=_column_descending(f.order, not f.descending), after=after)
        return after, page, count + 1

    def tasks_listed(self, f: TaskFilter, task_ids: list[int]) -> set[int]:
        """Which of ``task_ids`` the filter ``f`` still lists (a selection checked at each refresh)."""
        return self.store.task_ids_listed(task_ids, **self._filter_args(f))

    def task_detail(self, ref: str) -> dict[str, Any]:
        """Everything about one task: fields, prediction, votes, annotations and review comments,
        assignments, and the decision history with its rules (``explain``), all read in one
        read transaction (:meth:`Store.read_transaction`): every part is of the same state,
        though other processes commit meanwhile (a head read before an escalation never
        stands over a history read after it)."""
        from .explain import explain_task

        with self.store.read_transaction():
            shown = self.engine.show(ref)
            task_id = shown["task"]["id"]
            votes = [{"worker": v["worker"], "label": loads(v["label"]), "flagged": bool(v["flagged"]),
                      "queue": v["queue"]} for v in self.store.votes(task_id)]
            explained = explain_task(self.store, f"id:{task_id}")
        reviews = [a for a in shown["annotations"] if a["stage"] in ("review", "escalated")]
        return {**shown, "votes": votes, "reviews": reviews, "explain": explained}


def first_hour(now: float, hours: int) -> int:
    """The first hour bucket (epoch seconds // 3600) of the figures "in the last ``hours``": the one
    that holds ``now - hours``. The counters (``activity``) are kept per clock hour, so that bucket
    counts in full and the window reaches back up to one hour more; starting one bucket later
    left out what was done in the first part of the last ``hours`` (an hour after the clock
    turned, a submission 23.5 hours old)."""
    return int((now - hours * HOUR) // HOUR)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            value = seconds / size
            return f"{value:.0f}{unit}" if value >= 10 or value == int(value) else f"{value:.1f}{unit}"
    return f"{seconds:.0f}s"


duration = _duration
