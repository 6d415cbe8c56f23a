"""Building the plugin manager: built-ins, entry points, the workflow's modules, a plugins folder.

Nothing is loaded at import time. :func:`get_plugin_manager` builds a fresh
manager each time it is called (tests build as many as they like);
:func:`load_plugins` also collects what the plugins registered.

Where plugins come from, in this order:

1. entry points in the ``labelyard`` group: the built-ins (declared in
   Labelyard's own ``pyproject.toml``, exactly as a third-party package
   declares its plugins) and every installed plugin package. When
   ``LABELYARD_LOAD_PLUGINS`` is set, only the entry points it names
   (comma-separated; empty means none) are loaded, and a name no entry
   point has is a warning on stderr;
2. the workflow's ``plugins:`` list of importable modules;
3. every ``*.py`` file of ``--plugins-dir DIR`` (or ``LABELYARD_PLUGINS_DIR``).

A plugin that fails to import, has a misspelt hook (``pm.check_pending()``)
or raises while registering is recorded with its error and left out, with
everything it registered; the others go on. ``LABELYARD_TRACE_PLUGINS=1``
prints each hook call on stderr.

Workflow entries (``sources:``, ``reviewers:``, ``sinks:``, ``notify:``) are
checked here too: :func:`entry_key` is an entry's identity, and
:func:`entry_diagnostics` finds settings of the wrong type and two entries
with one identity, for ``validate`` and ``apply``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from rules.visible_text import one_line, quoted

from . import hookspecs
from .plugin_calls import PluginExit, called_safely, plugin_code, printing_to_stderr, read_safely
from .plugin_time import MAX_LIMIT_S, MIN_LIMIT_S, PluginTimeout
from .plugin_values import plugin_text, without_password

ENTRY_POINT_GROUP = "labelyard"
KINDS = {  # hook -> what it registers (as `labelyard plugins` shows it)
    "register_sources": "sources",
    "register_sinks": "sinks",
    "register_reviewers": "reviewers",
    "register_notifiers": "notifiers",
    "register_functions": "functions",
}
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\Z")


def describe_error(exc: BaseException) -> str:
    """An exception told to a person: its whole message, and where in plugin code it was raised.

    The message is kept whole, every line of it (a ``PluginError``'s message is shown as is: its
    second line may say how to fix it; pluggy's error for a wrong hook signature names the
    argument on its third). Where it was raised follows the first line. Printed on a terminal,
    the lines after the first are indented under it (:func:`router.render.continued`).

    Never raises: a plugin's exception whose message cannot be made (its ``__str__`` raises, or
    gives no text) is told by its class name, so the handler goes on with the step's next entry.
    Bytes of the message that are not UTF-8 (a file name from ``os.listdir()``) are written out
    (``caf\\xe9``): the message is stored in the run's record and printed.
    """
    name = _class_name(exc)
    if isinstance(exc, PluginTimeout):  # says which plugin, its limit and where it was stopped
        name = "PluginError"
    message = "\n".join(line.rstrip() for line in _message(exc).strip().splitlines() if line.strip())
    text = message or name
    if isinstance(exc, PluginExit):  # sys.exit() in plugin code: told as such, where it was called
        exc, name = exc.raised, "PluginExit"
    elif name not in ("PluginError", "LabelyardError") and not text.startswith(name):
        text = f"{name}: {text}"
    try:
        # pluggy's check of a hook's signature raises in pluggy, not in plugin code: its message names both
        last = None if isinstance(exc, pluggy.PluginValidationError) else _raised_at(exc)
    except Exception:  # noqa: BLE001 - a traceback that cannot be read: the message alone
        last = None
    if last is not None and name not in ("PluginError", "LabelyardError"):  # those name their cause
        first, newline, rest = text.partition("\n")
        text = f"{first} ({os.path.basename(last.filename)}:{last.lineno}){newline}{rest}"
    return plugin_text(text)


def _class_name(exc: BaseException) -> str:
    name = getattr(type(exc), "__name__", None)
    return name if isinstance(name, str) and name else "Exception"


def _message(exc: BaseException) -> str:
    """``str(exc)``, or ``""`` when that raises or is not text (a plugin's exception may be broken)."""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001
        return ""
    return message if isinstance(message, str) else ""


def _raised_at(exc: BaseException) -> traceback.FrameSummary | None:
    """The frame that raised ``exc``, past Python's import machinery; none for a module that is not there."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<frozen") and f"{os.sep}importlib{os.sep}" not in f.filename]
    if not frames:
        return None
    if isinstance(exc, ImportError) and os.path.dirname(os.path.abspath(frames[-1].filename)) == _HERE:
        return None  # the module Labelyard was asked to import is missing: the message names it
    return frames[-1]


_HERE = os.path.dirname(os.path.abspath(__file__))


def trace(message: str) -> None:
    """Print ``message`` on stderr, on one line, when ``LABELYARD_TRACE_PLUGINS`` is set. The names in it
    (a plugin file's, an entry's path, a task's id an older version stored) are the user's text: a
    control character or a line break in one is written out (``\x1b``), never sent to the terminal."""
    if os.environ.get("LABELYARD_TRACE_PLUGINS"):
        try:
            print(f"labelyard trace: {one_line(message)}", file=sys.stderr, flush=True)
        except OSError:
            pass


@dataclass
class PluginInfo:
    """One plugin: where it came from, the hooks it implements, what it registered, its error.

    ``known_version`` is the version known when it loaded (an entry point's distribution's, a
    plugin file's ``__version__``); a workflow module's is looked up on first use of
    :attr:`version`, since finding its distribution reads every installed one's file list.
    """

    name: str
    origin: str  # built-in | entry point | workflow | plugins-dir
    location: str  # module or file
    known_version: str | None = None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    module: Any = field(default=None, repr=False, compare=False)  # a workflow module whose version is not looked up yet

    @property
    def version(self) -> str | None:
        """Its distribution's version, else its module's ``__version__``; ``None`` when it has neither."""
        if self.module is not None:
            module, self.module = self.module, None
            self.known_version = distribution_version(module) or _module_version(module)
        return self.known_version

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "origin": self.origin, "location": self.location, "version": self.version,
                "hooks": self.hooks, "registered": self.registered, "error": self.error}


class LabelyardPluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers where each plugin came from and what failed."""

    def __init__(self) -> None:
        super().__init__("labelyard")
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}

    def add(self, plugin: object, info: PluginInfo) -> bool:
        """Register ``plugin`` under ``info.name``; on failure record the error instead."""
        loaded_as = self.get_name(plugin)
        if loaded_as is not None:  # the same module again (an entry point's, named in the workflow's `plugins:`)
            trace(f"{info.location}: already loaded as plugin `{loaded_as}`")
            return True
        if info.name in self.infos and self.infos[info.name].error is None:  # another module, the same name
            earlier = self.infos[info.name]
            there = _file_of(self.get_plugin(info.name))
            here = _file_of(plugin) or info.location
            what = f"{earlier.origin} {earlier.location}" + (f", {there}" if there and there != earlier.location
                                                             else "")
            info.error = (f"a plugin named `{info.name}` is already loaded ({what}); this one is {here}: "
                          "rename one of them")
            self.infos[f"{info.name} ({info.location})"] = info
            return False
        self.infos[info.name] = info
        try:
            self.register(plugin, name=info.name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            info.error = describe_error(exc)
            return False
        try:
            self.check_pending()
        except pluggy.PluginValidationError as exc:
            self.unregister(name=info.name)
            info.error = f"{exc} (a misspelt hook name? see docs/plugins.md)"
            return False
        info.hooks = sorted(h.name for h in self.get_hookcallers(plugin) or ())
        return True

    def failed(self, info: PluginInfo, exc: BaseException) -> None:
        info.error = describe_error(exc)
        self.infos[info.name if info.name not in self.infos else f"{info.name} ({info.location})"] = info


def get_plugin_manager(workflow_plugins: Iterable[str] = (), plugins_dir: str | None = None) -> LabelyardPluginManager:
    """A new plugin manager with every plugin loaded (see the module's docstring for where from)."""
    pm = LabelyardPluginManager()
    _load_entry_points(pm)
    for module_name in workflow_plugins:
        info = PluginInfo(module_name, "workflow", module_name)
        try:
            with plugin_code():
                module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin is recorded, never fatal
            pm.failed(info, exc)
            continue
        info.module = module  # its version is looked up when asked for (`labelyard plugins`)
        pm.add(module, info)
    folder = plugins_dir if plugins_dir is not None else os.environ.get("LABELYARD_PLUGINS_DIR") or None
    if folder:
        _load_folder(pm, folder)
    return pm


def _module_version(module: object) -> str | None:
    """A module's ``__version__`` when it has one as text (a plugin outside any package)."""
    version = getattr(module, "__version__", None)
    return version if isinstance(version, str) and version.strip() else None


@functools.lru_cache(maxsize=1)
def _distributions_by_package() -> dict[str, list[str]]:
    """``importlib.metadata.packages_distributions()``, read once per process: it reads the file
    list of every installed distribution (~0.4 s with a few hundred)."""
    from importlib.metadata import packages_distributions

    try:
        return dict(packages_distributions())
    except Exception:  # noqa: BLE001 - broken metadata of some distribution: no versions, never a failure
        return {}


def distribution_version(module: Any) -> str | None:
    """The version of the installed distribution that holds ``module`` (found by its top-level
    package; among several sharing it, a namespace package, the one that lists the module's
    file), or ``None`` when no installed distribution holds it."""
    from importlib import metadata

    top = str(getattr(module, "__name__", "")).partition(".")[0]
    names = list(dict.fromkeys(_distributions_by_package().get(top) or ()))
    found = []
    for name in names:
        try:
            found.append(metadata.distribution(name))
        except metadata.PackageNotFoundError:
            continue
    if len(found) > 1:
        found = [dist for dist in found if _holds(dist, module)]
    return found[0].version if len(found) == 1 and found[0].version else None


def _holds(dist: Any, module: Any) -> bool:
    """Whether ``dist``'s file list names ``module``'s file."""
    where = getattr(module, "__file__", None)
    if not where:
        return False
    where = os.path.realpath(where)
    return any(os.path.realpath(str(dist.locate_file(path))) == where for path in dist.files or ())


def allowed_entry_points() -> set[str] | None:
    """The entry points ``LABELYARD_LOAD_PLUGINS`` lets load (``None``: it is not set, so every one)."""
    value = os.environ.get("LABELYARD_LOAD_PLUGINS")
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _load_entry_points(pm: LabelyardPluginManager) -> None:
    from importlib.metadata import entry_points

    allowed = allowed_entry_points()
    seen: set[tuple[str, str]] = set()
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=_builtin_first)
    if allowed:
        _warn_unknown_allowed(allowed, {ep.name for ep in found})
    for ep in found:
        if (ep.name, ep.value) in seen:  # an editable install can list a distribution twice
            continue
        seen.add((ep.name, ep.value))
        if allowed is not None and ep.name not in allowed:
            continue
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        builtin = dist_name == "labelyard"
        info = PluginInfo(ep.name, "built-in" if builtin else "entry point", ep.value,
                          known_version=None if dist is None else dist.version)
        if not builtin and dist_name:
            info.origin = f"entry point ({dist_name})"
        try:
            with plugin_code():
                plugin = ep.load()
        except Exception as exc:  # noqa: BLE001
            pm.failed(info, exc)
            continue
        pm.add(plugin, info)


_warned_unknown: set[str] = set()  # told once per command, however often plugins are loaded


def _warn_unknown_allowed(allowed: set[str], names: set[str]) -> None:
    """Say on stderr which names of ``LABELYARD_LOAD_PLUGINS`` no entry point has (a registered
    source's name given for its package's entry point loads nothing, silently otherwise)."""
    unknown = sorted(allowed - names - _warned_unknown)
    if not unknown:
        return
    _warned_unknown.update(unknown)
    listed = ", ".join(quoted(name) for name in unknown)
    try:
        those, it = ("that name", "it") if len(unknown) == 1 else ("those names", "them")
        print(f"labelyard: warning: LABELYARD_LOAD_PLUGINS names {listed}, but no installed plugin has an entry "
              f"point of {those}, so nothing is loaded for {it}; it takes entry-point names, as `labelyard plugins` "
              f"lists them (entry points: {', '.join(sorted(names)) or 'none'}), not the names plugins register",
              file=sys.stderr, flush=True)
    except OSError:
        pass


def _builtin_first(ep: Any) -> tuple[int, str]:
    dist = getattr(ep, "dist", None)
    return (0 if dist is not None and dist.metadata["Name"] == "labelyard" else 1, ep.name)


def _load_folder(pm: LabelyardPluginManager, folder: str) -> None:
    if not os.path.isdir(folder):
        info = PluginInfo(plugin_text(os.path.basename(os.path.normpath(folder)) or folder), "plugins-dir",
                          plugin_text(folder))
        pm.failed(info, FileNotFoundError(f"--plugins-dir {folder}: no such folder"))
        return
    loaded = {_real(_file_of(pm.get_plugin(name))): name for name in pm.infos if pm.get_plugin(name) is not None}
    for filename in sorted(os.listdir(folder)):
        if not filename.endswith(".py") or filename.startswith((".", "_")):
            continue
        path = os.path.abspath(os.path.join(folder, filename))
        stem = filename[:-3]
        if _real(path) in loaded:  # the workflow's `plugins:` module found again here: one file, loaded once
            trace(f"{path}: already loaded as plugin `{loaded[_real(path)]}`")
            continue
        # A file name that is not UTF-8 (caf\udce9.py) is listed, stored and printed written out: caf\xe9
        info = PluginInfo(plugin_text(stem), "plugins-dir", plugin_text(path))
        module_name = f"labelyard_plugins_dir.{stem}"
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            with plugin_code():
                spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001
            sys.modules.pop(module_name, None)
            pm.failed(info, exc)
            continue
        info.known_version = _module_version(module)
        pm.add(module, info)


def _file_of(plugin: object) -> str | None:
    """The file a plugin module was loaded from (``None`` for a plugin that is no module of a file)."""
    where = getattr(plugin, "__file__", None)
    return os.path.abspath(where) if isinstance(where, str) and where else None


def _real(path: str | None) -> str | None:
    """``path`` with symlinks and ``..`` resolved: one file, however it was reached."""
    return os.path.realpath(path) if path else None


@dataclass
class Registered:
    """Something a plugin registered: its callable and the plugin that gave it."""

    name: str
    plugin: str
    func: Callable[..., Any]
    # Declared with `register(name, func, settings={...}, required=[...])`: what `validate` checks
    # (a setting's kind is a type, or a `plugin_api.Setting` with bounds).
    settings: dict[str, Any] | None = None
    required: tuple[str, ...] = ()
    # A sink's `register(name, write, finish=...)`: called once at the end of each run's sink step.
    finish: Callable[..., Any] | None = None


def _declared(kind: str, name: str, settings: Any, required: Any) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    """Check what a plugin declares of its settings at ``register``; a mistake is the plugin's error.

    A setting's kind is a type (``int``) or a :class:`~router.plugin_api.Setting` (a kind with bounds).
    """
    from .plugin_api import KIND_NAMES, Setting

    what = f"cannot register {kind[:-1]} `{name}`"
    if settings is None:
        if required:
            raise ValueError(f"{what}: `required` needs `settings` too")
        return None, ()
    if not isinstance(settings, dict) or not all(isinstance(k, str) for k in settings):
        raise ValueError(f"{what}: `settings` is a mapping of setting names to kinds, not {settings!r}")
    for setting, setting_kind in settings.items():
        if isinstance(setting_kind, Setting):
            problem = setting_kind.problem()
            if problem is not None:
                raise ValueError(f"{what}: setting `{setting}`: {problem}")
            continue
        if setting_kind not in KIND_NAMES:
            raise ValueError(f"{what}: setting `{setting}` has kind {setting_kind!r}; kinds are "
                             "str, int, float, bool, dict, list")
    if isinstance(required, str) or not all(isinstance(r, str) for r in required):
        raise ValueError(f"{what}: `required` is a list of setting names, not {required!r}")
    missing = [r for r in required if r not in settings]
    if missing:
        raise ValueError(f"{what}: required setting(s) {', '.join(missing)} are not in `settings`")
    return dict(settings), tuple(required)


class Plugins:
    """Every loaded plugin and what each registered, by kind and name."""

    def __init__(self, pm: LabelyardPluginManager):
        self.pm = pm
        self.registry: dict[str, dict[str, Registered]] = {kind: {} for kind in KINDS.values()}
        self._collect()

    @property
    def infos(self) -> list[PluginInfo]:
        return list(self.pm.infos.values())

    @property
    def errors(self) -> list[PluginInfo]:
        return [info for info in self.pm.infos.values() if info.error]

    def _collect(self) -> None:
        """Call each plugin's ``register_*`` hooks, one plugin at a time, in load order.

        A plugin's registrations are kept only when all its hooks succeed: one
        that raises (or registers a bad or taken name) is left out entirely.
        """
        impls: dict[str, list[tuple[str, str, Any]]] = {}
        for hook, kind in KINDS.items():
            for impl in getattr(self.pm.hook, hook).get_hookimpls():
                impls.setdefault(impl.plugin_name, []).append((hook, kind, impl))
        for plugin_name in [*self.pm.infos, *(n for n in impls if n not in self.pm.infos)]:
            if plugin_name in impls:
                self._collect_plugin(plugin_name, impls[plugin_name])

    def _collect_plugin(self, plugin_name: str, impls: list[tuple[str, str, Any]]) -> None:
        info = self.pm.infos.get(plugin_name)
        staged: dict[str, dict[str, Registered]] = {kind: {} for kind in KINDS.values()}
        for hook, kind, impl in impls:
            table = staged[kind]

            def register(name: str, func: Callable[..., Any], _kind: str = kind,
                         _table: dict[str, Registered] = table, *, settings: dict[str, type] | None = None,
                         required: Iterable[str] = (), finish: Callable[..., Any] | None = None) -> None:
                if not isinstance(name, str) or not NAME.match(name):
                    raise ValueError(f"cannot register {_kind[:-1]} {name!r}: a name is letters, digits, _ . -")
                if not callable(func):
                    raise ValueError(f"cannot register {_kind[:-1]} `{name}`: {func!r} is not callable")
                if _kind == "functions":
                    _check_function(name, func)
                    if settings is not None or required:
                        raise ValueError(f"cannot register function `{name}`: functions have no settings")
                if finish is not None and (_kind != "sinks" or not callable(finish)):
                    raise ValueError(f"cannot register {_kind[:-1]} `{name}`: `finish` is a callable, for sinks only")
                declared, needed = _declared(_kind, name, settings, tuple(required))
                taken = self.registry[_kind].get(name) or _table.get(name)
                if taken is not None:
                    raise ValueError(f"{_kind[:-1]} `{name}` is already registered by plugin `{taken.plugin}`")
                _table[name] = Registered(name, plugin_name, _safely(_kind, func), declared, needed,
                                          None if finish is None else called_safely(finish))

            trace(f"{plugin_name}.{hook}()")
            try:
                with plugin_code():
                    impl.function(*[{"register": register}[a] for a in impl.argnames])
            except Exception as exc:  # noqa: BLE001 - the plugin is left out, the others go on
                if info is not None and info.error is None:
                    info.error = f"{hook}: {describe_error(exc)}"
                return
        for kind, table in staged.items():
            self.registry[kind].update(table)
            if info is not None and table:
                info.registered.setdefault(kind, []).extend(table)

    def get(self, kind: str, name: str) -> Registered | None:
        return self.registry[kind].get(name)

    @property
    def functions(self) -> dict[str, Callable[..., Any]]:
        """Expression functions, ready for :class:`~router.engine.Engine`."""
        return {name: r.func for name, r in self.registry["functions"].items()}

    def add_commands(self, cli: Any) -> list[tuple[str, str, str | None]]:
        """Let every plugin add its CLI commands (errors recorded, never raised).

        A plugin may add commands, never replace or remove one: a command it replaced is put
        back, and returned as ``(plugin, command, earlier)``, ``earlier`` being the plugin that
        added the command kept, ``None`` for one ``cli`` had before (a built-in).
        """
        commands = getattr(cli, "commands", None)
        owners: dict[str, str] = {}  # command -> the plugin that added it
        replaced: list[tuple[str, str, str | None]] = []
        for impl in self.pm.hook.register_commands.get_hookimpls():
            info = self.pm.infos.get(impl.plugin_name)
            if info is not None and info.error is not None:
                continue  # left out: it failed while registering
            trace(f"{impl.plugin_name}.register_commands()")
            before = dict(commands) if isinstance(commands, dict) else {}
            try:
                with plugin_code():
                    impl.function(*[{"cli": cli}[a] for a in impl.argnames])
            except Exception as exc:  # noqa: BLE001
                if info is not None and info.error is None:
                    info.error = f"register_commands: {describe_error(exc)}"
            finally:
                for name, command in before.items():
                    if commands.get(name) is not command:
                        commands[name] = command
                        replaced.append((impl.plugin_name, name, owners.get(name)))
                for name in commands if isinstance(commands, dict) else ():
                    if name not in before:
                        owners[name] = impl.plugin_name
        return replaced

    def as_list(self) -> list[dict[str, Any]]:
        return [info.as_dict() for info in self.infos]


def _safely(kind: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A registered callable as Labelyard calls it (:mod:`router.plugin_calls`): its prints on stderr,
    ``sys.exit()`` a failure of its own. Rule functions only have their prints moved, cheaply (they
    run inside routing, once per task, where ``rules.expr`` turns what they raise into the task's hold)."""
    if kind == "sources":
        return read_safely(func)
    return printing_to_stderr(func) if kind == "functions" else called_safely(func)


def _check_function(name: str, func: Callable[..., Any]) -> None:
    from rules.expr import compile_expression

    compile_expression("1", functions={name: func})  # raises ValueError for a bad or clashing name


def load_plugins(workflow_plugins: Iterable[str] = (), plugins_dir: str | None = None) -> Plugins:
    """Load every plugin and collect what they registered."""
    return Plugins(get_plugin_manager(workflow_plugins, plugins_dir))


def workflow_functions(workflow_plugins: Iterable[str] = ()) -> dict[str, Callable[..., Any]]:
    """The expression functions plugins register (for compiling a workflow that calls them)."""
    return load_plugins(workflow_plugins).functions


def workflow_functions_for_text(text: str) -> dict[str, Callable[..., Any]]:
    """Like :func:`workflow_functions`, reading the ``plugins:`` list from a workflow's YAML text.

    The text is read with the workflow language's own loader, so a document too
    deep or too large gives no functions (its compiler reports why) rather than
    an exception.
    """
    doc = _document(text, "<workflow>")
    return workflow_functions(_modules(doc))


def _document(text: str, filename: str) -> Any:
    from rules.diagnostics import WorkflowInvalid
    from rules.loader import load_document

    try:
        return load_document(text, filename)
    except WorkflowInvalid:
        return None


def _modules(doc: Any) -> list[str]:
    modules = doc.data.get("plugins") if doc is not None and isinstance(doc.data, dict) else None
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        return []
    return modules


def check_workflow_text(text: str, filename: str) -> tuple[Any, list[Any]]:
    """Compile a workflow as ``apply`` and ``run`` would: ``(workflow or None, diagnostics)``.

    Plugins are loaded when the workflow lists ``plugins:`` or does not compile
    without them (it may call plugin functions); a ``plugins:`` module that
    fails to load is an error at its entry. Plugin entries are checked too
    (:func:`entry_diagnostics`).
    """
    from rules.diagnostics import Diagnostic
    from rules.workflow import compile_workflow

    from .render import continued

    workflow, diagnostics = compile_workflow(text, filename)
    doc = _document(text, filename)
    modules = _modules(doc)
    if doc is not None and (workflow is None or modules):
        loaded = load_plugins(modules)
        if workflow is None and loaded.functions:
            workflow, diagnostics = compile_workflow(text, filename, loaded.functions)
        failed = {info.location: info.error for info in loaded.errors if info.origin == "workflow"}
        for index, module in enumerate(modules):
            if module in failed:
                pos = doc.where(("plugins", index))
                diagnostics.append(Diagnostic(filename, pos.line, pos.col, f"plugin module {quoted(module)} "
                                              f"does not load: {continued(failed[module])}"))
    if workflow is None and doc is not None:
        from .function_hints import explained  # a function no plugin loaded here registers: where they come from

        diagnostics = explained(diagnostics, doc.data)
    if doc is not None and workflow is not None:
        diagnostics += entry_diagnostics(doc)
        diagnostics += unknown_plugin_warnings(doc, load_plugins(modules) if _has_entries(doc) else None)
    diagnostics = sorted(set(diagnostics))
    if any(d.severity == "error" for d in diagnostics):
        return None, diagnostics
    return workflow, diagnostics


# -- workflow entries (`sources:`, `reviewers:`, `sinks:`, `notify:`) ---------------------
ENTRY_SECTIONS = ("sources", "reviewers", "sinks", "notify")
_ENTRY_SETTINGS: dict[str, dict[str, type]] = {  # settings Labelyard itself reads, by section
    "sources": {"name": str, "path": str, "url": str, "time_limit": float},
    "reviewers": {"name": str, "path": str, "url": str, "queues": list, "time_limit": float},
    "sinks": {"name": str, "path": str, "url": str, "batch": int, "time_limit": float},
    "notify": {"name": str, "path": str, "url": str, "events": list, "time_limit": float},
}
MAX_BATCH = 1_000_000  # a sink's `batch:` is a LIMIT in SQLite (a 64-bit integer), and a list in memory


def entry_setting(setting: str, kind: type, queues: Iterable[str] | None = None) -> Any:
    """What Labelyard checks of one of its own settings: its kind, with bounds for ``batch``, the
    event names for ``events`` and, when the workflow's ``queues`` are known, its queues for ``queues``."""
    from . import events
    from .plugin_api import Setting

    if setting == "batch":
        return Setting(int, min=1, max=MAX_BATCH)
    if setting == "time_limit":  # seconds a call of the entry's plugin may take in `run` (router.plugin_time)
        return Setting(float, min=MIN_LIMIT_S, max=MAX_LIMIT_S)
    if setting == "events":
        return Setting(list, choices=events.CHOICES, check=_events_problem)
    if setting == "queues" and queues:
        return Setting(list, choices=tuple(queues))
    return kind


def _events_problem(wanted: list) -> str | None:
    """``events: []`` once meant the default, ``[done]``: a notifier asked for nothing got done events."""
    if not wanted:
        return ("is empty, which would send nothing: list the events to send (`events: [done]`, the default "
                "when `events:` is left out), or remove the entry")
    return None


def workflow_queues(spec: Any) -> list[str] | None:
    """The queue names of a workflow's ``queues:`` (``None`` when it has no such mapping to check against)."""
    queues = spec.get("queues") if isinstance(spec, dict) else None
    return [str(name) for name in queues] if isinstance(queues, dict) and queues else None


def entry_key(entry: dict[str, Any]) -> str:
    """An entry's identity, under which its progress is kept: its ``name``, else its
    plugin and ``path`` (normalised: ``./out`` is ``out``) or ``url`` (a password in it hidden:
    ``http://bob:***@host/``), else its plugin.
    Other settings are not part of it, so editing them keeps the entry's cursor,
    deliveries and outbox."""
    name = entry.get("name")
    if isinstance(name, str) and name:
        return name
    plugin = str(entry.get("plugin"))
    path = entry.get("path")
    if isinstance(path, str) and path.strip():
        # One file, one identity: `./out.jsonl`, `out.jsonl` and `sub/../out.jsonl` are the same file.
        return f"{plugin}:{os.path.normpath(path)}"
    url = entry.get("url")
    if isinstance(url, str) and url:
        return f"{plugin}:{without_password(url)}"  # printed on every line of the entry: no password
    return plugin


def sink_database_problem(entry: dict[str, Any], db_path: str) -> str | None:
    """Why a sink entry must not run against the database at ``db_path``: its ``path:`` is the
    database or one of its files (relative paths start at the database's folder, as under ``run``).
    A sink appends to its file and cuts it back to its last recorded size, which destroys a database."""
    from .export import database_file

    path = entry.get("path")
    if not isinstance(path, str) or not path.strip():
        return None
    folder = os.path.dirname(os.path.abspath(db_path))
    what = database_file(os.path.normpath(os.path.join(folder, os.path.expanduser(path))), db_path)
    if what is None:
        return None
    return (f"`path: {path}` is {what} ({os.path.realpath(db_path)}): the sink would overwrite it; "
            "give the sink a file of its own")


def database_entry_diagnostics(text: str, filename: str, db_path: str) -> list[Any]:
    """An error at the ``path:`` of each ``sinks:`` entry of a workflow that would write into the
    database at ``db_path`` (:func:`sink_database_problem`), or into the file of an earlier sink
    (:func:`same_file_sinks`, paths resolved from the database's folder); ``apply`` checks them,
    as it knows the database."""
    from rules.diagnostics import Diagnostic

    doc = _document(text, filename)
    entries = doc.data.get("sinks") if doc is not None and isinstance(doc.data, dict) else None
    entries = entries if isinstance(entries, list) else []
    out = []
    for index, entry in enumerate(entries):
        problem = sink_database_problem(entry, db_path) if isinstance(entry, dict) else None
        if problem is not None:
            pos = doc.where(("sinks", index, "path"))
            out.append(Diagnostic(filename, pos.line, pos.col,
                                  f"sinks entry {index + 1} ({quoted(entry.get('plugin'))}): {problem}"))
    folder = os.path.dirname(os.path.abspath(db_path))
    return out + same_file_diagnostics(doc, entries, same_file_sinks(entries, folder))


def sink_file(entry: dict[str, Any], base_dir: str | None) -> str | None:
    """The file a sink entry writes (its ``path:``), ``None`` without one. With ``base_dir`` (the
    database's folder, where relative paths start) the real path, symlinks and ``..`` resolved;
    without it (``validate`` knows no database) the path as written, normalised."""
    path = entry.get("path")
    if not isinstance(path, str) or not path.strip():
        return None
    path = os.path.expanduser(path)
    if base_dir is None:
        return os.path.normpath(path)
    return os.path.realpath(os.path.join(base_dir, path))


def same_file_sinks(entries: list[Any], base_dir: str | None) -> dict[int, int]:
    """``{index: index of an earlier sinks entry that writes the same file}``.

    Two sinks on one file cut each other's output (each cuts the file back to the size it
    recorded before appending). Files are compared as :func:`sink_file` gives them, and, when
    both exist, as files (a hard link is the same file). Without ``base_dir`` a relative path
    and an absolute one cannot be compared: ``apply`` and ``run``, which know the database, do.
    """
    seen: list[tuple[str, int]] = []
    same: dict[int, int] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("plugin"):
            continue
        target = sink_file(entry, base_dir)
        if target is None:
            continue
        earlier = next((i for other, i in seen if other == target or _same_existing(other, target)), None)
        if earlier is not None:
            same[index] = earlier
        else:
            seen.append((target, index))
    return same


def _same_existing(a: str, b: str) -> bool:
    """Whether two existing paths are one file (a hard link, a case-insensitive file system)."""
    try:
        return os.path.isabs(a) and os.path.isabs(b) and os.path.samefile(a, b)
    except OSError:
        return False


def same_file_message(entries: list[Any], index: int, earlier: int, line: int | None = None) -> str:
    """Why the sinks entry ``index`` must not run: it writes the file of the entry ``earlier``."""
    other, path = entries[earlier], entries[index].get("path")
    where = quoted(other.get("plugin")) + (f", line {line}" if line is not None else "")
    return (f"sinks entry {index + 1} ({quoted(entries[index].get('plugin'))}) writes the same file as sinks entry "
            f"{earlier + 1} ({where}): {quoted(f'path: {path}')}; each would cut the other's output "
            "back to its own last size, so give each sink a file of its own")


def same_file_diagnostics(doc: Any, entries: list[Any], same: dict[int, int]) -> list[Any]:
    """An error at the ``path:`` of each sinks entry of ``same`` (:func:`same_file_sinks`)."""
    from rules.diagnostics import Diagnostic

    out = []
    for index, earlier in same.items():
        pos = doc.where(("sinks", index, "path"))
        line = doc.where(("sinks", earlier)).line
        out.append(Diagnostic(doc.filename, pos.line, pos.col, same_file_message(entries, index, earlier, line)))
    return out


def entry_problems(section: str, entry: dict[str, Any],
                   queues: Iterable[str] | None = None) -> list[tuple[tuple[Any, ...], str]]:
    """``(where, message)`` for each setting Labelyard reads that is wrong: of the wrong type, a
    ``batch`` or ``time_limit`` out of bounds, an ``events`` name that is no event, or (with the workflow's
    ``queues``, :func:`workflow_queues`) a reviewer's queue the workflow does not have. ``where``
    is the setting's path in the entry: ``("events",)``, or ``("events", 1)`` for one of its values."""
    from .plugin_api import PluginError, checked_setting

    problems = []
    for setting, kind in _ENTRY_SETTINGS.get(section, {}).items():
        value = entry.get(setting)
        if value is None:
            continue
        try:
            checked_setting(setting, value, entry_setting(setting, kind, queues))
        except PluginError as exc:
            problems.append((_setting_path(setting, exc), str(exc)))
            continue
        if kind is str and not value.strip():
            problems.append(((setting,), f"setting {quoted(f'{setting}:')} must not be empty"))
    return problems


def _setting_path(setting: Any, exc: Exception) -> tuple[Any, ...]:
    """Where in an entry a setting's problem is: the setting, or the one value of its list at fault."""
    item = getattr(exc, "item", None)
    return (setting,) if item is None else (setting, item)


def declared_problems(section: str, entry: dict[str, Any],
                      found: Registered | None) -> list[tuple[tuple[Any, ...], str, str]]:
    """``(where, message, severity)`` for an entry against the settings its plugin declared: a
    required one missing, a wrong type or a value it does not allow is an error; one the plugin
    does not know a warning (a typo such as `pth:` would be ignored). ``where`` is the setting's
    path in the entry (as :func:`entry_problems` gives it), ``()`` for the entry itself. Nothing
    when the plugin declared no settings."""
    import difflib

    from .plugin_api import PluginError, checked_setting

    if found is None or found.settings is None:
        return []
    plugin = found.name
    out: list[tuple[tuple[Any, ...], str, str]] = []
    for setting in found.required:
        if entry.get(setting) in (None, ""):
            out.append(((), f"`{plugin}` needs `{setting}:`", "error"))
    own = _ENTRY_SETTINGS.get(section, {})
    for setting, value in entry.items():
        if setting == "plugin" or value is None:
            continue
        kind = found.settings.get(setting) if isinstance(setting, str) else None
        if setting in own:
            # Labelyard's own setting: checked by entry_problems; what the plugin declares of it
            # besides (the webhook's `url:` scheme) is checked once Labelyard's own check passes.
            if kind is None or _own_problem(setting, value, own[setting]):
                continue
        elif kind is None:
            known = sorted({*found.settings, *own})
            close = difflib.get_close_matches(str(setting), known, n=1)
            hint = f"did you mean `{close[0]}:`?" if close else f"it knows {', '.join(known)}"
            out.append(((setting,), f"`{plugin}` has no setting {quoted(f'{setting}:')} ({hint}); it is ignored",
                        "warning"))
            continue
        try:
            checked_setting(setting, value, kind)
        except PluginError as exc:
            out.append((_setting_path(setting, exc), str(exc), "error"))
    return out


def _own_problem(setting: str, value: Any, kind: type) -> bool:
    """Whether one of Labelyard's own settings fails Labelyard's check of its kind."""
    from .plugin_api import PluginError, checked_setting

    try:
        checked_setting(setting, value, kind)
    except PluginError:
        return True
    return False


def duplicate_entries(entries: list[Any]) -> dict[int, int]:
    """``{index: index of the earlier entry with the same identity}`` within one section."""
    seen: dict[str, int] = {}
    duplicates = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("plugin"):
            continue
        key = entry_key(entry)
        if key in seen:
            duplicates[index] = seen[key]
        else:
            seen[key] = index
    return duplicates


def duplicate_message(section: str, entries: list[Any], index: int, earlier: int) -> str:
    return (f"{section} entry {index + 1} has the same identity {quoted(entry_key(entries[index]))} as entry "
            f"{earlier + 1}, so they would share their progress: give one of them its own `name:`")


def entry_diagnostics(doc: Any) -> list[Any]:
    """A diagnostic for each plugin entry of ``doc`` (a :class:`rules.loader.Document`) with a
    setting of the wrong type, or with the identity of an earlier entry of its section."""
    from rules.diagnostics import Diagnostic

    spec = doc.data if isinstance(doc.data, dict) else {}
    queues = workflow_queues(spec)
    out = []
    for section in ENTRY_SECTIONS:
        entries = spec.get(section)
        if not isinstance(entries, list):
            continue
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            for where, message in entry_problems(section, entry, queues):
                pos = doc.where((section, index, *where))
                out.append(Diagnostic(doc.filename, pos.line, pos.col,
                                      f"{section} entry {index + 1} ({quoted(entry.get('plugin'))}): {message}"))
        same = same_file_sinks(entries, None) if section == "sinks" else {}
        out += same_file_diagnostics(doc, entries, same)
        for index, earlier in duplicate_entries(entries).items():
            if index in same:  # one path, one identity: the same file is the mistake, not a missing `name:`
                continue
            pos = doc.where((section, index))
            out.append(Diagnostic(doc.filename, pos.line, pos.col, duplicate_message(section, entries, index, earlier)))
    return out


_SECTION_KIND = {"sources": "sources", "reviewers": "reviewers", "sinks": "sinks", "notify": "notifiers"}


def _has_entries(doc: Any) -> bool:
    return isinstance(doc.data, dict) and any(doc.data.get(section) for section in ENTRY_SECTIONS)


def unknown_plugin_warnings(doc: Any, plugins: Plugins | None) -> list[Any]:
    """A warning for each entry naming a plugin that is not loaded here (only a warning: `run`
    may load more with ``--plugins-dir``, but a typo shows before the first run fails on it), and
    the problems of each entry whose plugin declared its settings (:func:`declared_problems`)."""
    from rules.diagnostics import Diagnostic

    if plugins is None:
        return []
    out = []
    for section in ENTRY_SECTIONS:
        entries = doc.data.get(section)
        if not isinstance(entries, list):
            continue
        known = plugins.registry[_SECTION_KIND[section]]
        for index, entry in enumerate(entries):
            name = entry.get("plugin") if isinstance(entry, dict) else None
            if isinstance(name, str) and name in known:
                for where, message, severity in declared_problems(section, entry, known[name]):
                    # the entry for a missing setting, an unknown one at its name, a wrong one at its value
                    pos = doc.where((section, index, *where), key=severity == "warning")
                    out.append(Diagnostic(doc.filename, pos.line, pos.col,
                                          f"{section} entry {index + 1} (`{name}`): {message}", severity))
            elif isinstance(name, str):
                pos = doc.where((section, index, "plugin"))
                listed = ", ".join(sorted(known)) or "none"
                out.append(Diagnostic(doc.filename, pos.line, pos.col,
                                      f"no {section} plugin {quoted(name)} is loaded here ({section}: {listed}); "
                                      "`run` fails on this entry unless it loads one (--plugins-dir)", "warning"))
    return out


def entry_diagnostics_for(spec: dict[str, Any], text: str, filename: str) -> list[Any]:
    """What ``validate`` says of a compiled workflow's (``spec``) plugin entries, errors and warnings:
    :func:`entry_diagnostics` and, with the plugins loaded, :func:`unknown_plugin_warnings`.
    The YAML is read, and plugins loaded, only when it has entries."""
    if not any(spec.get(section) for section in ENTRY_SECTIONS):
        return []
    doc = _document(text, filename)
    if doc is None:
        return []
    return sorted(set(entry_diagnostics(doc) + unknown_plugin_warnings(doc, load_plugins(_modules(doc)))))
