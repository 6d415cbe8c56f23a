"""Plugins: hook specs, discovery, the registry, ``labelyard plugins``, source plugins through ``ingest``.

Each hook has a ``test_hook_<name>`` test here (a test checks that), and each
is documented in docs/plugins.md with its signature (another test checks that).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import inspect
import json
import os
import re
import site
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pluggy
import pytest

from router import hookspecs
from router.plugin_api import PluginRun
from router.plugins import get_plugin_manager, load_plugins

ROOT = Path(__file__).resolve().parents[1]
BUILTINS = {"jsonl", "csv", "folder", "labelstudio", "gold", "prediction_agreement", "validity", "webhook"}
HOOKS = sorted(name for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "labelyard_spec"))

WORKFLOW = """\
workflow: pets
labels: {type: choice, choices: [cat, dog, bird]}
queues:
  triage: {roles: [annotator]}
on_create:
  - name: confident
    when: prediction.confidence >= 0.9
    do: accept
  - name: default
    do: {annotate: triage, overlap: 1}
"""


def plugin_file(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


@pytest.fixture
def clean_env(monkeypatch):
    for key in ("LABELYARD_LOAD_PLUGINS", "LABELYARD_PLUGINS_DIR", "LABELYARD_TRACE_PLUGINS"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def project(run, tmp_path):
    """An initialised database with the small workflow applied."""
    (tmp_path / "pets.workflow.yaml").write_text(WORKFLOW, encoding="utf-8")
    run.ok("init")
    run.ok("apply", "pets.workflow.yaml")
    return run


# -- the specs and their documentation ---------------------------------------------------
def test_every_hook_has_a_docstring_that_says_what_it_registers():
    assert HOOKS == ["register_commands", "register_functions", "register_notifiers", "register_reviewers",
                     "register_sinks", "register_sources"]
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and len(doc.split()) >= 40, f"{name} needs a docstring in the manner of pytest's hookspecs"


def test_every_hook_is_documented_with_its_signature_and_an_example():
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    sections = re.split(r"^### ", text, flags=re.M)
    for name in HOOKS:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        section = next((s for s in sections if s.startswith(f"`{name}(")), None)
        assert section is not None, f"docs/plugins.md has no `### `{name}({params})`` section"
        assert section.startswith(f"`{name}({params})`"), f"docs/plugins.md: {name} is documented with another signature"
        assert "@hookimpl" in section, f"docs/plugins.md: the {name} section needs an example"


def test_every_hook_has_a_test():
    names = set(re.findall(r"^def (test_hook_\w+)", Path(__file__).read_text(encoding="utf-8"), re.M))
    for name in HOOKS:
        assert f"test_hook_{name}" in names, f"no test_hook_{name} in {Path(__file__).name}"


def test_router_never_imports_the_builtin_plugins():
    """Built-ins reach router only through entry points (the import-linter contract says the same)."""
    for path in (ROOT / "router").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from plugins\b|import plugins\b)", text, re.M), path.name


def test_builtin_plugins_use_only_routers_public_api():
    allowed = {"router", "router.plugin_api"}
    for path in (ROOT / "plugins").glob("*.py"):
        for module in re.findall(r"^\s*from (router[\w.]*) import", path.read_text(encoding="utf-8"), re.M):
            assert module in allowed, f"{path.name} imports {module}"


# -- discovery ---------------------------------------------------------------------------
def test_builtins_are_registered_through_entry_points_like_any_plugin(clean_env):
    pm = get_plugin_manager()
    assert isinstance(pm, pluggy.PluginManager) and pm.project_name == "labelyard"
    builtins = {i.name: i for i in pm.infos.values() if i.origin == "built-in"}
    assert set(builtins) == BUILTINS
    assert all(i.error is None for i in builtins.values())
    assert builtins["jsonl"].hooks == ["register_sinks", "register_sources"]
    assert builtins["webhook"].location == "plugins.webhook"
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "[project.entry-points.labelyard]" in pyproject


def test_each_call_builds_a_new_manager(clean_env, tmp_path):
    plugin_file(tmp_path / "p", "extra", """
        from router import hookimpl
        @hookimpl
        def register_sources(register):
            register("extra", lambda run: [])
    """)
    with_dir = load_plugins(plugins_dir=str(tmp_path / "p"))
    without = load_plugins()
    assert with_dir.get("sources", "extra") is not None
    assert without.get("sources", "extra") is None
    assert with_dir.pm is not without.pm


def test_allow_list_loads_only_the_named_entry_points(clean_env, monkeypatch):
    monkeypatch.setenv("LABELYARD_LOAD_PLUGINS", "jsonl, webhook")
    assert {i.name for i in load_plugins().infos} == {"jsonl", "webhook"}
    monkeypatch.setenv("LABELYARD_LOAD_PLUGINS", "")
    assert load_plugins().infos == []


def test_plugins_dir_and_workflow_modules_are_loaded(clean_env, tmp_path, monkeypatch):
    plugin_file(tmp_path / "dir", "local_one", """
        from router import hookimpl
        @hookimpl
        def register_reviewers(register):
            register("always_ok", lambda run, item: None)
    """)
    plugin_file(tmp_path / "mods", "company_plugins_x1", """
        from router import hookimpl
        @hookimpl
        def register_notifiers(register):
            register("pager", lambda run, note: None)
    """)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    loaded = load_plugins(["company_plugins_x1"], str(tmp_path / "dir"))
    infos = {i.name: i for i in loaded.infos}
    assert infos["local_one"].origin == "plugins-dir"
    assert infos["local_one"].registered == {"reviewers": ["always_ok"]}
    assert infos["company_plugins_x1"].origin == "workflow"
    assert loaded.get("notifiers", "pager").plugin == "company_plugins_x1"


def test_a_misspelt_hook_fails_loudly_and_the_others_go_on(clean_env, tmp_path):
    plugin_file(tmp_path, "typo", """
        from router import hookimpl
        @hookimpl
        def register_source(register):   # missing the s
            register("typo", lambda run: [])
    """)
    loaded = load_plugins(plugins_dir=str(tmp_path))
    typo = next(i for i in loaded.infos if i.name == "typo")
    assert "register_source" in typo.error and "misspelt" in typo.error
    assert not loaded.pm.has_plugin("typo")
    assert loaded.get("sources", "jsonl") is not None


def test_a_plugin_that_raises_is_recorded_and_the_others_go_on(clean_env, tmp_path):
    plugin_file(tmp_path, "a_broken_import", "import nonexistent_module_xyz\n")
    plugin_file(tmp_path, "b_broken_register", """
        from router import hookimpl
        @hookimpl
        def register_sinks(register):
            raise RuntimeError("sink setup exploded")
    """)
    plugin_file(tmp_path, "c_fine", """
        from router import hookimpl
        @hookimpl
        def register_sinks(register):
            register("fine", lambda run, tasks: None)
    """)
    loaded = load_plugins(plugins_dir=str(tmp_path))
    errors = {i.name: i.error for i in loaded.errors}
    assert "nonexistent_module_xyz" in errors["a_broken_import"]
    assert "sink setup exploded" in errors["b_broken_register"]
    assert "c_fine" not in errors
    assert loaded.get("sinks", "fine") is not None


def test_register_refuses_duplicates_and_bad_names(clean_env, tmp_path):
    plugin_file(tmp_path, "dupe", """
        from router import hookimpl
        @hookimpl
        def register_sources(register):
            register("jsonl", lambda run: [])
    """)
    plugin_file(tmp_path, "badname", """
        from router import hookimpl
        @hookimpl
        def register_functions(register):
            register("len", len)
    """)
    loaded = load_plugins(plugins_dir=str(tmp_path))
    errors = {i.name: i.error for i in loaded.errors}
    assert "already registered by plugin `jsonl`" in errors["dupe"]
    assert "clashes" in errors["badname"]
    assert loaded.get("sources", "jsonl").plugin == "jsonl"


# No database named (a LABELYARD_DB that is not there is an error, as --db): the plugins alone.
NO_DB = {"LABELYARD_DB": None}


def test_labelyard_plugins_lists_each_plugin_with_origin_and_hooks(run, tmp_path):
    plugin_file(tmp_path / "pl", "mine", """
        from router import hookimpl
        @hookimpl
        def register_reviewers(register):
            register("mine", lambda run, item: None)
    """)
    listed = run.json("plugins", "--json", "--plugins-dir", tmp_path / "pl", env=NO_DB)
    by_name = {p["name"]: p for p in listed}
    assert BUILTINS <= set(by_name)
    assert by_name["mine"]["origin"] == "plugins-dir"
    assert by_name["mine"]["hooks"] == ["register_reviewers"]
    assert by_name["labelstudio"]["registered"] == {"sources": ["labelstudio"], "sinks": ["labelstudio"]}
    text = run.ok("plugins", "--plugins-dir", tmp_path / "pl", env=NO_DB).stdout
    assert re.search(r"^webhook\s+built-in\s+plugins\.webhook  version \S+$", text, re.M)


def test_labelyard_plugins_exits_1_and_names_a_broken_plugin(run, tmp_path):
    plugin_file(tmp_path / "pl", "kaputt", "raise ValueError('bad plugin file')\n")
    proc = run("plugins", "--plugins-dir", tmp_path / "pl", env=NO_DB)
    assert proc.returncode == 1
    assert "plugin kaputt: ValueError: bad plugin file" in proc.stderr
    assert "jsonl" in proc.stdout


# -- the hooks ---------------------------------------------------------------------------
def test_hook_register_sources(project, tmp_path):
    """A source plugin from --plugins-dir, used by `ingest NAME:ARG`, with a cursor kept between runs."""
    plugin_file(tmp_path / "pl", "countdown", """
        from router import hookimpl
        from router.plugin_api import SourcePart, TaskInput

        @hookimpl
        def register_sources(register):
            register("countdown", read)

        def read(run):
            for n in range(int(run.config["path"]), 0, -1):
                yield SourcePart("countdown", [TaskInput(n, f"c{n}", {"n": n})], n)
    """)
    result = project.json("ingest", "countdown:3", "--json", "--plugins-dir", tmp_path / "pl")
    assert result["ingested"] == 3
    again = project.json("ingest", "countdown:4", "--json", "--plugins-dir", tmp_path / "pl")
    assert (again["ingested"], again["duplicates"]) == (1, 3)
    unknown = project("ingest", "nosuch:thing")
    assert unknown.returncode == 1 and "no source plugin `nosuch`" in unknown.stderr


def test_hook_register_sinks(clean_env, tmp_path):
    plugin_file(tmp_path, "printer", """
        from router import hookimpl
        @hookimpl
        def register_sinks(register):
            register("printer", lambda run, tasks: {"seen": len(tasks)})
    """)
    sink = load_plugins(plugins_dir=str(tmp_path)).get("sinks", "printer")
    assert sink.plugin == "printer"
    assert sink.func(PluginRun("printer", "printer"), []) == {"seen": 0}


def test_hook_register_reviewers(clean_env, tmp_path):
    from router.plugin_api import ReviewItem, Verdict

    loaded = load_plugins()
    item = ReviewItem(1, "t1", "senior", {"gold": "cat", "text": "abc"}, None, [], {"label": "dog", "confidence": 0.8},
                      [{"worker": "ann", "label": "cat"}], "cat", 1.0)
    run = PluginRun("x", "x", label_type="choice", choices=("cat", "dog"))
    assert loaded.get("reviewers", "gold").func(run, item) == Verdict("approve", "matches the known answer")
    disagree = loaded.get("reviewers", "prediction_agreement").func(run, item)
    assert disagree is None  # abstains by default on disagreement
    strict = PluginRun("x", "x", {"on_disagree": "reject"}, label_type="choice", choices=("cat", "dog"))
    assert loaded.get("reviewers", "prediction_agreement").func(strict, item).verdict == "reject"


def test_validity_reviewer_checks_choices_boxes_and_spans(clean_env):
    from router.plugin_api import ReviewItem

    review = load_plugins().get("reviewers", "validity").func

    def item(label, data):
        return ReviewItem(1, "t", "q", data, None, [], {}, [{"worker": "w", "label": label}], label, 1.0)

    boxes = PluginRun("validity", "v", label_type="boxes", choices=("car",))
    image = {"width": 100, "height": 50}
    assert review(boxes, item([{"x": 10, "y": 10, "width": 20, "height": 20, "label": "car"}], image)) is None
    assert "zero area" in review(boxes, item([{"x": 1, "y": 1, "width": 0, "height": 5}], image)).reason
    assert "outside the image" in review(boxes, item([{"x": 90, "y": 1, "width": 20, "height": 5}], image)).reason
    spans = PluginRun("validity", "v", label_type="spans")
    assert "ends after the text" in review(spans, item([{"start": 2, "end": 9}], {"text": "short"})).reason
    assert "empty or reversed" in review(spans, item([{"start": 3, "end": 3}], {"text": "short"})).reason
    choice = PluginRun("validity", "v", {"approve_valid": True}, label_type="choice", choices=("cat",))
    assert review(choice, item("cat", {})).verdict == "approve"
    assert "not one of cat" in review(choice, item("cow", {})).reason


def test_hook_register_notifiers(clean_env, tmp_path):
    plugin_file(tmp_path, "collector", """
        from router import hookimpl
        SEEN = []
        @hookimpl
        def register_notifiers(register):
            register("collector", lambda run, note: SEEN.append(note.event))
    """)
    loaded = load_plugins(plugins_dir=str(tmp_path))
    assert loaded.get("notifiers", "collector").plugin == "collector"
    assert loaded.get("notifiers", "webhook").plugin == "webhook"


def test_hook_register_functions(project, tmp_path):
    """A function from LABELYARD_PLUGINS_DIR is usable in rules: apply, ingest and claim compile them."""
    plugin_file(tmp_path / "pl", "textfns", """
        from router import hookimpl
        @hookimpl
        def register_functions(register):
            register("word_count", lambda text: len(str(text or "").split()))
    """)
    env = {"LABELYARD_PLUGINS_DIR": str(tmp_path / "pl")}
    (tmp_path / "long.workflow.yaml").write_text(WORKFLOW.replace(
        "  - name: default", "  - name: long text\n    when: word_count(task.data.text) > 3\n"
                            "    do: {annotate: triage, overlap: 2}\n  - name: default"), encoding="utf-8")
    project.ok("apply", "long.workflow.yaml", env=env)
    (tmp_path / "t.jsonl").write_text(
        '{"id": "a", "data": {"text": "one two three four five"}}\n{"id": "b", "data": {"text": "short"}}\n')
    result = project.json("ingest", "t.jsonl", "--json", env=env)
    assert result["routed"] == {"long text": 1, "default": 1}
    project.ok("workers", "add", "ann", "--role", "annotator", env=env)
    assert project.json("claim", "--as", "ann", "--json", env=env)["external_id"] == "a"
    missing = project("apply", "long.workflow.yaml", env={"LABELYARD_PLUGINS_DIR": None})
    assert missing.returncode == 1 and "unknown function `word_count`" in missing.stderr


def test_hook_register_commands(run, tmp_path):
    plugin_file(tmp_path / "pl", "greeter", """
        import click
        from router import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            @click.argument("name")
            def greet(name):
                \"\"\"Say hello.\"\"\"
                click.echo(f"hello {name}")

            @cli.command()
            def claim():
                click.echo("hijacked")
    """)
    env = {"LABELYARD_PLUGINS_DIR": str(tmp_path / "pl")}
    greeted = run.ok("greet", "ann", env=env)
    assert greeted.stdout == "hello ann\n"
    assert "labelyard: plugin greeter tried to replace the `claim` command; kept the built-in" in greeted.stderr
    assert "greet" in run.ok("--help", env=env).stdout
    assert "greet" not in run.ok("--help").stdout
    hijack = run("claim", "--as", "x", env=env)
    assert "hijacked" not in hijack.stdout  # the built-in `claim` ran (and found no database)


# -- built-in sources through `labelyard ingest PLUGIN:ARG` ------------------------------
def test_ingest_labelstudio_export(project, tmp_path):
    export = [
        {"id": 7, "data": {"text": "my card was charged twice"},
         "predictions": [{"model_version": "v2", "score": 0.6, "result": [{"value": {"choices": ["dog"]}}]},
                         {"model_version": "v1", "score": 0.4, "result": [{"value": {"choices": ["cat"]}}]}],
         "annotations": [{"completed_by": {"email": "ann@example.com"}, "result": [{"value": {"choices": ["dog"]}}]},
                         {"completed_by": 3, "was_cancelled": True, "result": [{"value": {"choices": ["cat"]}}]}]},
        {"id": 8, "data": {"text": "app crashes"}, "predictions": [{"score": 0.95, "result": [{"value": {"choices": ["cat"]}}]}]},
        {"id": 9, "data": {"text": "odd"}, "predictions": [{"score": 0.5, "result": [{"value": {"choices": ["cow"]}}]}]},
        {"data": {"text": "no id"}},
        {"id": 10, "data": {"text": "plain"}},
    ]
    (tmp_path / "export.json").write_text(json.dumps(export), encoding="utf-8")
    result = project.json("ingest", "labelstudio:export.json", "--json")
    assert (result["ingested"], result["rejected"], result["prior_votes"]) == (3, 2, 1)
    assert result["routed"] == {"confident": 1, "default": 2}
    task = project.json("show", "7", "--json")
    assert task["prediction"] == {**task["prediction"], "label": "dog", "confidence": 0.6, "model": "v2"}
    # the Label Studio annotation was a vote, which met the overlap of 1: on_quorum accepted it
    assert [(a["worker"], a["label"]) for a in task["annotations"]] == [("labelstudio:ann@example.com", "dog")]
    assert (task["task"]["status"], task["task"]["final_by"], task["task"]["final_label"]) == ("done", "consensus", "dog")
    assert project.json("show", "10", "--json")["task"]["stage"] == "annotate"
    reasons = [r["reason"] for r in project.json("rejects", "--json")]
    assert any("cow" in r for r in reasons) and any("no `id`" in r for r in reasons)
    again = project.json("ingest", "labelstudio:export.json", "--json")
    assert (again["ingested"], again["duplicates"], again.get("prior_votes")) == (0, 3, None)  # votes once


def test_ingest_folder_one_task_per_file(project, tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "a.txt").write_text("first ticket", encoding="utf-8")
    (inbox / "b.png").write_bytes(b"\x89PNG fake")
    (inbox / "sub" / "c.txt").write_text("nested", encoding="utf-8")
    result = project.json("ingest", "folder:inbox/", "--json")
    assert result["ingested"] == 2  # the default pattern does not descend
    a = project.json("show", "a.txt", "--json")["task"]["data"]
    assert a["text"] == "first ticket" and a["file"] == "a.txt" and os.path.isabs(a["path"])
    assert "text" not in project.json("show", "b.png", "--json")["task"]["data"]
    (inbox / "d.txt").write_text("later", encoding="utf-8")
    again = project.json("ingest", "folder:inbox", "--json")
    assert (again["ingested"], again["duplicates"]) == (1, 0)  # known files are not even read again


def test_plain_file_ingest_still_works_and_csv_through_its_plugin(project, tmp_path):
    (tmp_path / "t.jsonl").write_text('{"id": "p1", "data": {"x": 1}}\n', encoding="utf-8")
    assert project.json("ingest", "t.jsonl", "--json")["ingested"] == 1
    with open(tmp_path / "t.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "prediction_label", "prediction_confidence"])
        writer.writerow(["c1", "hello", "cat", "0.95"])
        writer.writerow(["c2", "bye", "dog", "0.2"])
    result = project.json("ingest", "csv:t.csv", "--json")
    assert result["routed"] == {"confident": 1, "default": 1}
    assert project("ingest", "labelstudio:missing.json").stderr.strip().endswith("missing.json: no such file")


# -- a real external plugin package, installed into a fresh virtualenv -------------------
def build_wheel(source: Path, out: Path) -> Path:
    """A wheel of tests/external_plugin (assembled here, so no build backend or network is needed)."""
    name, version, dist = "labelyard_shout", "1.0.0", "labelyard_shout-1.0.0.dist-info"
    files: dict[str, bytes] = {
        f"{name}/__init__.py": (source / name / "__init__.py").read_bytes(),
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: labelyard-shout\nVersion: 1.0.0\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: labelyard-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": b"[labelyard]\nshout = labelyard_shout\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def test_an_installed_plugin_package_is_discovered_and_used(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # Labelyard's dependencies are where this test runs (a virtualenv of its own, or the system's):
    # the new one sees them through a .pth file, as --system-site-packages would see only the system's
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    Path(own, "labelyard-test-deps.pth").write_text(
        "\n".join(dict.fromkeys([sysconfig.get_paths()["purelib"], *site.getsitepackages()])) + "\n",
        encoding="utf-8")
    wheel = build_wheel(ROOT / "tests" / "external_plugin", tmp_path)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=300, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELYARD_")}
    env.update(LABELYARD_DB=str(tmp_path / "labelyard.db"), LABELYARD_WORKER="lead", PYTHONPATH=str(ROOT))

    def labelyard(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(python), "-c", "from router.cli import main; main()", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    assert labelyard("init").returncode == 0  # LABELYARD_DB names it: `plugins` opens it
    listed = {p["name"]: p for p in json.loads(labelyard("plugins", "--json").stdout)}
    assert listed["shout"]["origin"] == "entry point (labelyard-shout)"
    assert listed["shout"]["version"] == "1.0.0"
    assert listed["shout"]["registered"] == {"functions": ["shout"], "sources": ["numbers"]}
    assert labelyard("shout", "hey").stdout == "HEY!\n"
    (tmp_path / "w.workflow.yaml").write_text(WORKFLOW.replace(
        "  - name: default", '  - name: loud\n    when: shout(task.data.text) == "NUMBER 2"\n'
                            "    do: {annotate: triage, overlap: 3}\n  - name: default"), encoding="utf-8")
    assert labelyard("apply", "w.workflow.yaml").returncode == 0, "the workflow calls the plugin's function"
    result = json.loads(labelyard("ingest", "numbers:3", "--json").stdout)
    assert result["routed"] == {"loud": 1, "default": 2}
    # outside the virtualenv the package is not installed
    assert "shout" not in {p["name"] for p in json.loads(subprocess.run(
        [sys.executable, "-c", "from router.cli import main; main()", "plugins", "--json"], env=env,
        capture_output=True, text=True, cwd=tmp_path, timeout=120).stdout)}


def test_labelstudio_votes_go_to_their_task_when_ids_and_external_ids_cross(project, tmp_path):
    vote = lambda label: [{"completed_by": {"email": "ann@example.com"}, "result": [{"value": {"choices": [label]}}]}]  # noqa: E731
    export = [{"id": 2, "data": {"text": "first in"}, "annotations": vote("dog")},  # internal id 1, external "2"
              {"id": 1, "data": {"text": "second in"}, "annotations": vote("cat")}]  # internal id 2, external "1"
    (tmp_path / "export.json").write_text(json.dumps(export), encoding="utf-8")
    result = project.json("ingest", "labelstudio:export.json", "--json")
    assert (result["ingested"], result["prior_votes"]) == (2, 2)
    assert project.json("show", "ext:2", "--json")["task"]["final_label"] == "dog"
    assert project.json("show", "ext:1", "--json")["task"]["final_label"] == "cat"



def test_an_imported_worker_name_never_carries_an_escape_sequence(project, tmp_path):
    vote = [{"completed_by": {"email": "ev\u001b[31mil@x"}, "result": [{"value": {"choices": ["dog"]}}]}]
    (tmp_path / "ls.json").write_text(json.dumps([{"id": "ls1", "data": {}, "annotations": vote}]), encoding="utf-8")
    # workers add refuses a name with a control character, and so is an imported voter's: the vote is
    # left out, saying why, with the escape written out (it was stored as a worker named escaped)
    result = project.json("ingest", "labelstudio:ls.json", "--json")
    assert (result["ingested"], result["rejected"], result.get("prior_votes", 0)) == (1, 1, 0)
    names = [w["id"] for w in project.json("workers", "list", "--json")]
    assert not any("\u001b" in n or "ev" in n for n in names)
    [reject] = project.json("rejects", "--json")
    assert "`completed_by.email` refused as a worker's name: it holds a control character" in reject["reason"]
    assert "labelstudio:ev\\x1b[31mil@x" in reject["reason"] and "\u001b" not in reject["reason"]
