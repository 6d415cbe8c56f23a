"""Shared helpers: temp dirs, statistics, child processes with peak RSS, output.

Every bench prints exactly one JSON line on stdout::

    {"bench": ..., "variant": ..., "metrics": {flat name -> number},
     "ratios": {name -> labelyard / peer}, "targets": [{...}],
     "detail": {...}, "params": {...}, "env": {...}, "ts": ...}

and a human table on stderr. Progress lines go to stderr too.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------- temp dirs


def bench_root() -> str:
    """Where databases live: ``$BENCH_TMPDIR`` or ``<system tmp>/labelyard-bench``."""
    root = os.environ.get("BENCH_TMPDIR") or os.path.join(tempfile.gettempdir(), "labelyard-bench")
    os.makedirs(root, exist_ok=True)
    return root


@contextlib.contextmanager
def scratch_dir(prefix: str = "run-") -> Iterator[str]:
    """A fresh temp dir under :func:`bench_root`, removed afterwards."""
    d = tempfile.mkdtemp(prefix=prefix, dir=bench_root())
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def copy_db(src: str, dst: str) -> str:
    """Copy a checkpointed database file (no -wal beside it)."""
    assert not os.path.exists(src + "-wal") or os.path.getsize(src + "-wal") == 0, f"{src} has a WAL"
    shutil.copyfile(src, dst)
    return dst


def checkpoint(path: str) -> None:
    """Fold the WAL into the database file so it can be copied."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


# ---------------------------------------------------------------------------- commands


def labelyard_command() -> list[str]:
    """The real ``labelyard`` console script, preferring the one beside this interpreter.

    pyenv (and similar) put a shell shim first on PATH that costs tens of
    milliseconds per call; both sides of a comparison use the interpreter
    directly, so the shim is not measured.
    """
    sibling = Path(sys.executable).parent / "labelyard"
    if sibling.exists():
        return [str(sibling)]
    found = shutil.which("labelyard")
    if found:
        return [found]
    return [sys.executable, "-m", "router.cli"]


def run_measured(cmd: Sequence[str], *, env: dict[str, str] | None = None, stdin=None,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout: float | None = None,
                 on_start=None) -> dict[str, Any]:
    """Run ``cmd``; returns wall seconds, exit code, peak RSS of that child, and its output.

    Peak RSS is the child's ``VmHWM`` (its own high-water mark, reset by
    ``exec``) polled from ``/proc/PID/status`` every 10 ms until it exits,
    plus the peaks of the processes it forks (see :class:`_HwmPoller`).
    ``ru_maxrss`` from ``wait4()`` is kept too, but on Linux it also counts
    the parent's RSS at ``fork`` (``exec`` carries the old high-water mark
    over), so it is only an upper bound.
    ``on_start(proc)`` runs right after the process starts.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), env=env, stdin=stdin, stdout=stdout, stderr=stderr, cwd=bench_root())
    if on_start is not None:
        on_start(proc)
    hwm = _HwmPoller(proc.pid)
    hwm.start()
    out, err = b"", b""
    try:
        if stdout == subprocess.PIPE or stderr == subprocess.PIPE:
            # read everything first (no pipe deadlock), then reap with wait4 for the rusage
            out_b, err_b = _drain(proc, timeout)
            out, err = out_b or b"", err_b or b""
        _pid, status, usage = os.wait4(proc.pid, 0)
    finally:
        hwm.stop()
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_s": wall, "rc": proc.returncode, "peak_rss_mib": hwm.peak_kib / 1024.0,
            "ru_maxrss_mib": usage.ru_maxrss / 1024.0, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
            "stdout": out.decode("utf-8", "replace"), "stderr": err.decode("utf-8", "replace")}


CHILD_SCAN_S = 0.5


class _HwmPoller:
    """Polls ``VmHWM`` of one process and of its child processes from /proc in a thread.

    ``peak_kib`` is the process's own peak plus the peak of each child it
    started (``labelyard ingest FILE`` forks a routing child). Pages the two
    share after the fork are counted twice, so the sum is an upper bound.
    """

    def __init__(self, pid: int, interval: float = 0.01):
        import threading

        self.pid, self.interval = pid, interval
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def peak_kib(self) -> int:
        return sum(self.peaks.values())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        children: list[int] = []
        next_scan = 0.0
        while not self._stop.is_set():
            # Scanning /proc for children costs CPU the measured processes need: a few
            # times a second is enough (a child lives for the whole run).
            if time.monotonic() >= next_scan:
                children = self._children()
                next_scan = time.monotonic() + CHILD_SCAN_S
            for pid in [self.pid, *children]:
                hwm = _vm_hwm_kib(pid)
                if hwm is not None:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), hwm)
            self._stop.wait(self.interval)

    def _children(self) -> list[int]:
        """Processes whose parent is ours (a scan of /proc/*/stat: not every kernel has ``children``)."""
        found: list[int] = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 1 and fields[1] == str(self.pid).encode():
                found.append(int(name))
        return found


def _vm_hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass  # not started yet, or a zombie (no VmHWM line)
    return None


def _drain(proc: subprocess.Popen, timeout: float | None) -> tuple[bytes | None, bytes | None]:
    import selectors

    sel = selectors.DefaultSelector()
    bufs: dict[Any, list[bytes]] = {}
    for f in (proc.stdout, proc.stderr):
        if f is not None:
            sel.register(f, selectors.EVENT_READ)
            bufs[f] = []
    deadline = None if timeout is None else time.monotonic() + timeout
    while sel.get_map():
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if deadline is not None and wait == 0.0:
            proc.kill()
            raise subprocess.TimeoutExpired(proc.args, timeout)
        for key, _ in sel.select(wait):
            chunk = os.read(key.fd, 1 << 16)
            if chunk:
                bufs[key.fileobj].append(chunk)
            else:
                sel.unregister(key.fileobj)
                key.fileobj.close()
    return (b"".join(bufs[proc.stdout]) if proc.stdout in bufs else None,
            b"".join(bufs[proc.stderr]) if proc.stderr in bufs else None)


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LABELYARD_NOW", None)
    env.update(extra)
    return env


# ---------------------------------------------------------------------------- statistics


def percentile(values, p: float) -> float:
    """Linear-interpolated percentile (the peers' definition)."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * (p / 100.0)
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def target(name: str, value: float, op: str, bound: float, what: str) -> dict[str, Any]:
    """One target check: ``value op bound``."""
    met = {"<=": value <= bound, ">=": value >= bound, "<": value < bound, "==": value == bound}[op]
    return {"name": name, "value": _round(value), "op": op, "bound": bound, "met": bool(met), "what": what}


# ---------------------------------------------------------------------------- output


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    try:
        with open("/proc/loadavg") as handle:
            return [float(x) for x in handle.read().split()[:3]]
    except OSError:  # pragma: no cover - non-Linux
        return []


REPO_ROOT = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("router", "rules", "plugins", "workflows", "tui")
_CODE: dict[str, Any] = {"source": "worktree", "root": str(REPO_ROOT)}


def use_snapshot(ref: str) -> str:
    """Measure the code of git ``ref`` instead of the working tree.

    ``git archive REF`` (read-only on the repository) extracts the packages
    into a temp dir that goes first on ``sys.path`` here and on
    ``PYTHONPATH`` for every child (the ``labelyard`` console script
    included: the path finder runs before the editable install's finder).
    Call it before anything imports ``router``.
    """
    import atexit
    import io
    import tarfile

    assert "router" not in sys.modules and "rules" not in sys.modules, "router was imported before the snapshot"
    commit = subprocess.run(["git", "rev-parse", ref], cwd=REPO_ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    names = set(subprocess.run(["git", "ls-tree", "--name-only", commit], cwd=REPO_ROOT, capture_output=True,
                               text=True, check=True).stdout.split())
    wanted = [p for p in CODE_PACKAGES if p in names]
    blob = subprocess.run(["git", "archive", "--format=tar", commit, *wanted], cwd=REPO_ROOT, capture_output=True,
                          check=True).stdout
    folder = tempfile.mkdtemp(prefix="code-", dir=bench_root())
    atexit.register(shutil.rmtree, folder, True)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(folder)
    sys.path.insert(0, folder)
    os.environ["PYTHONPATH"] = folder + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    _CODE.update(source=f"git:{ref}", root=folder, commit=commit[:12])
    seen = subprocess.run([sys.executable, "-c", "import router, rules; print(router.__file__, rules.__file__)"],
                          cwd=bench_root(), env=dict(os.environ), capture_output=True, text=True).stdout.split()
    assert seen and all(p.startswith(folder) for p in seen), f"children would not import the snapshot: {seen}"
    return folder


def code_root() -> str:
    """The folder whose ``router``, ``rules``… packages are measured (a snapshot or the work tree)."""
    return str(_CODE["root"])


def code_version() -> dict[str, Any]:
    """Which code was measured: the commit, whether router/ or rules/ differ from it, a content digest."""
    import hashlib

    info: dict[str, Any] = {"code_source": _CODE["source"]}
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "router", "rules"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head, dirty = "", ""
    if _CODE["source"] == "worktree":
        info.update(commit=head or None, router_rules_dirty=bool(dirty))
    else:
        info.update(commit=_CODE["commit"], worktree_head=head or None)
    digest = hashlib.sha256()
    root = Path(_CODE["root"])
    for pkg in ("router", "rules"):
        for f in sorted((root / pkg).rglob("*.py")):
            digest.update(str(f.relative_to(root)).encode())
            digest.update(f.read_bytes())
    info["router_rules_sha256"] = digest.hexdigest()[:16]
    return info


_LOAD_AT_START: list[float] = []


def mark_start() -> None:
    """Remember the load average when a bench starts (reported in ``env``)."""
    _LOAD_AT_START[:] = loadavg()


def env_info() -> dict[str, Any]:
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        nproc = os.cpu_count()
    return {"nproc": nproc, "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "sqlite_version": sqlite3.sqlite_version, "platform": platform.platform(),
            "loadavg_start": list(_LOAD_AT_START), "loadavg_end": loadavg(), **code_version()}


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return float(f"{v:.4g}") if abs(v) < 1 else round(v, 3)
    return v


def emit(bench: str, variant: str, metrics: dict, ratios: dict, targets: list[dict],
         detail: dict | None = None, params: dict | None = None) -> dict:
    """Print the JSON result line on stdout; returns it."""
    line = {
        "bench": bench,
        "variant": variant,
        "metrics": {k: _round(v) for k, v in metrics.items()},
        "ratios": {k: _round(v) for k, v in ratios.items()},
        "targets": targets,
        "detail": detail or {},
        "params": params or {},
        "env": env_info(),
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(line), flush=True)
    return line


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], targets: list[dict] = ()) -> None:
    """A plain-text table on stderr, then the target checks."""
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(header)]
    out = [f"\n== {title} =="]
    out.append("  ".join(str(h).rjust(w) if i else str(h).ljust(w) for i, (h, w) in enumerate(zip(header, widths))))
    out.append("  ".join("-" * w for w in widths))
    for r in cells:
        out.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    for t in targets:
        mark = "ok  " if t["met"] else "MISS"
        out.append(f"  [{mark}] {t['name']}: {_fmt(t['value'])} {t['op']} {t['bound']}  ({t['what']})")
    print("\n".join(out) + "\n", file=sys.stderr, flush=True)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)
