"""Loading plugins for rule commands: ``validate`` as ``apply`` does, plugins left out whole, deep YAML.

Real subprocesses of ``labelyard`` and a real plugin manager.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from router.plugins import load_plugins

WORKFLOW = """\
workflow: p
labels: {type: choice, choices: [bug, spam]}
queues: {triage: {roles: [annotator]}}
on_create:
  - {name: long, when: word_count(task.data.text) > 3, do: {annotate: triage, overlap: 2}}
  - {name: default, do: {annotate: triage, overlap: 1}}
"""

WORD_COUNT = """
    from router import hookimpl

    @hookimpl
    def register_functions(register):
        register("word_count", lambda text: len(str(text or "").split()))
"""


def write(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


@pytest.fixture
def clean_env(monkeypatch):
    for key in ("LABELYARD_LOAD_PLUGINS", "LABELYARD_PLUGINS_DIR", "LABELYARD_TRACE_PLUGINS"):
        monkeypatch.delenv(key, raising=False)


# -- 7: validate loads plugins as apply does -------------------------------------------------
def test_validate_accepts_functions_of_a_plugins_dir_plugin(run, tmp_path):
    write(tmp_path / "pl", "words.py", WORD_COUNT)
    write(tmp_path, "p.workflow.yaml", WORKFLOW)
    run.env["LABELYARD_PLUGINS_DIR"] = str(tmp_path / "pl")
    assert run.ok("validate", "p.workflow.yaml").stdout == "p.workflow.yaml: ok (p)\n"
    run.ok("init")
    run.ok("apply", "p.workflow.yaml")


def test_validate_accepts_functions_of_a_module_in_plugins(run, tmp_path):
    write(tmp_path / "mods", "team_words.py", WORD_COUNT)
    write(tmp_path, "p.workflow.yaml", WORKFLOW + "plugins: [team_words]\n")
    run.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path / "mods"), run.env.get("PYTHONPATH")]))
    assert run.ok("validate", "p.workflow.yaml").stdout == "p.workflow.yaml: ok (p)\n"


def test_validate_reports_a_plugins_module_that_does_not_import(run, tmp_path):
    write(tmp_path, "p.workflow.yaml", WORKFLOW.replace("word_count(task.data.text)", "len(task.data)")
          + "plugins:\n  - no_such_module_xyz\n")
    proc = run("validate", "p.workflow.yaml")
    assert proc.returncode == 1
    assert proc.stderr == ("p.workflow.yaml:8:5: plugin module `no_such_module_xyz` does not load: "
                           "ModuleNotFoundError: No module named 'no_such_module_xyz'\n")


def test_deeply_nested_yaml_is_a_diagnostic_for_every_command(run, tmp_path):
    (tmp_path / "deep.workflow.yaml").write_text("workflow: p\nx: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    run.ok("init")
    for args in (["validate"], ["apply"], ["replay"], ["test"]):
        proc = run(*args, "deep.workflow.yaml")  # the runner fails the test on any traceback
        assert proc.returncode == 1, (args, proc.stderr)
        assert "nested too deeply" in proc.stdout + proc.stderr, (args, proc.stderr)


# -- f: a plugin that raises while registering is left out whole -------------------------------
def test_a_plugin_that_raises_while_registering_keeps_nothing_it_registered(clean_env, tmp_path):
    write(tmp_path, "half.py", """
        from router import hookimpl

        @hookimpl
        def register_sources(register):
            register("half_source", lambda run: [])

        @hookimpl
        def register_sinks(register):
            register("half_sink", lambda run, tasks: None)
            raise RuntimeError("sink setup exploded")

        @hookimpl
        def register_commands(cli):
            raise AssertionError("a plugin left out adds no commands")
    """)
    write(tmp_path, "whole.py", """
        from router import hookimpl

        @hookimpl
        def register_sinks(register):
            register("half_sink", lambda run, tasks: None)  # free again: the other plugin was left out
    """)
    loaded = load_plugins(plugins_dir=str(tmp_path))
    half = next(info for info in loaded.infos if info.name == "half")
    assert half.error == "register_sinks: RuntimeError: sink setup exploded (half.py:11)"
    assert half.registered == {}
    assert loaded.get("sources", "half_source") is None
    assert loaded.get("sinks", "half_sink").plugin == "whole"
    import click

    loaded.add_commands(click.Group())  # the left-out plugin's register_commands is not called


def test_validate_warns_of_an_entry_whose_plugin_is_not_loaded(run, tmp_path):
    (tmp_path / "pl.workflow.yaml").write_text(
        "workflow: f\nlabels: {type: choice, choices: [a, b]}\nqueues: {q: {roles: [annotator]}}\n"
        "on_create: [{name: r, do: {annotate: q}}]\n"
        "sinks: [{plugin: nope, path: x}, {plugin: jsonl, path: out.jsonl}]\n"
        'notify: [{plugin: webhok, url: "http://127.0.0.1:9/x"}]\n', encoding="utf-8")
    proc = run("validate", "pl.workflow.yaml")
    assert proc.returncode == 0  # a warning: `run --plugins-dir` may load it
    assert proc.stderr.splitlines() == [
        "pl.workflow.yaml:5:18: warning: no sinks plugin `nope` is loaded here (sinks: csv, jsonl, labelstudio); "
        "`run` fails on this entry unless it loads one (--plugins-dir)",
        "pl.workflow.yaml:6:19: warning: no notify plugin `webhok` is loaded here (notify: webhook); "
        "`run` fails on this entry unless it loads one (--plugins-dir)"]
    assert run("validate", "--strict", "pl.workflow.yaml").returncode == 1


def test_a_plugin_declares_its_settings_and_a_bad_declaration_leaves_it_out(clean_env, tmp_path):
    write(tmp_path, "declared.py", """
        from router import hookimpl

        @hookimpl
        def register_sinks(register):
            register("tally", lambda run, tasks: None, settings={"path": str, "every": int}, required=["path"])
    """)
    write(tmp_path, "sloppy.py", """
        from router import hookimpl

        @hookimpl
        def register_sinks(register):
            register("sloppy", lambda run, tasks: None, settings={"path": "text"})
    """)
    write(tmp_path, "needy.py", """
        from router import hookimpl

        @hookimpl
        def register_sinks(register):
            register("needy", lambda run, tasks: None, settings={"path": str}, required=["url"])
    """)
    loaded = load_plugins(plugins_dir=str(tmp_path))
    tally = loaded.get("sinks", "tally")
    assert (tally.settings, tally.required) == ({"path": str, "every": int}, ("path",))
    errors = {info.name: info.error for info in loaded.infos if info.error}
    assert errors["sloppy"].startswith("register_sinks: ValueError: cannot register sink `sloppy`: setting `path` "
                                       "has kind 'text'; kinds are str, int, float, bool, dict, list")
    assert errors["needy"].startswith("register_sinks: ValueError: cannot register sink `needy`: required "
                                      "setting(s) url are not in `settings`")
    assert loaded.get("sinks", "sloppy") is None and loaded.get("sinks", "needy") is None
