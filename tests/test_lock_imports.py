"""Nothing is imported while the write lock is held.

An import inside a transaction keeps every other writer waiting while a module loads
(or, without bytecode, compiles): when the consensus module was loaded at a process's
first decision, claim p99 with 64 annotators went from 59 to 218 ms. A fresh process
(so that nothing is loaded yet) claims, submits and decides through every path that
reads more than the store (gold mixed into claims, consensus, queue agreement, worker
rules, a review) and records the modules that appeared while the lock was held.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

WORKFLOW = """\
workflow: locks
labels: {type: choice, choices: [cat, dog]}
queues:
  triage: {roles: [annotator]}
  senior: {roles: [senior]}
on_create:
  - name: all
    do: {annotate: triage, overlap: 2}
on_quorum:
  - name: agreed
    when: votes.unanimous and (queue.kappa == null or queue.kappa > -2)
    do: accept
  - name: split
    do: {review: senior}
on_review:
  - name: settled
    do: accept
on_worker:
  - name: fast
    when: worker.fast_submits >= 100
    do: flag
quality:
  gold: {rate: 0.5}
  consensus: weighted
"""

SCRIPT = textwrap.dedent("""
    import json, sys
    from router.engine import Engine
    from router import writer_lock

    engine = Engine.open(sys.argv[1])
    imported = []
    enter, leave = writer_lock.WriterLock.__enter__, writer_lock.WriterLock.__exit__
    def watched_enter(self):
        result = enter(self)
        self._modules_before = set(sys.modules)
        return result
    def watched_exit(self, *exc):
        imported.extend(sorted(set(sys.modules) - self._modules_before))
        return leave(self, *exc)
    writer_lock.WriterLock.__enter__, writer_lock.WriterLock.__exit__ = watched_enter, watched_exit

    kinds = []
    for label_of in ({"ann1": "cat", "ann2": "dog"}, {"ann1": "cat", "ann2": "cat"}):
        for worker, label in label_of.items():
            view = engine.claim(worker)
            kinds.append(view["kind"])
            engine.submit(view["assignment"], worker, label=label)
    review = engine.claim("erin")
    kinds.append(review["kind"])
    engine.submit(review["assignment"], "erin", verdict="approve")
    print(json.dumps({"imported": imported, "kinds": kinds}))
""")


def test_claims_submits_and_decisions_import_nothing_under_the_write_lock(tmp_path):
    from router.engine import Engine
    from router.gold import add_gold
    from router.ingest import read_file
    from router.store import Store

    db = str(tmp_path / "labelyard.db")
    Store.init(db)[0].close()
    engine = Engine.open(db)
    engine.apply(WORKFLOW, "locks.workflow.yaml", actor="lead")
    for name, role in (("ann1", "annotator"), ("ann2", "annotator"), ("erin", "senior")):
        engine.add_worker(name, [role], [], capacity=None, actor="lead")
    tasks, gold = tmp_path / "tasks.jsonl", tmp_path / "gold.jsonl"
    tasks.write_text("".join(json.dumps({"id": f"t{i}", "data": {"n": i}}) + "\n" for i in range(4)), encoding="utf-8")
    gold.write_text("".join(json.dumps({"id": f"g{i}", "answer": "cat"}) + "\n" for i in range(4)), encoding="utf-8")
    engine.ingest(read_file(str(tasks), engine.workflow.labels.choices), str(tasks))
    assert add_gold(engine, str(gold), "lead").added == 4
    engine.close()

    proc = subprocess.run([sys.executable, "-c", SCRIPT, db], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert "review" in result["kinds"] and "annotate" in result["kinds"]  # the paths ran
    assert result["imported"] == []
