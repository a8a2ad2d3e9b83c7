"""The locked wheelhouse: exactly the versions in ``uv.lock`` for the edge members, for one
target platform, cached between builds.

- the pins come from ``uv export --frozen --no-dev --package rae-tablet-api
  --no-emit-workspace`` (rae-tablet-api pulls rae-edge, rae-sync and rae-models; central's
  dependencies are not reachable from it), with every hash the lock holds;
- wheels are fetched with ``pip download --only-binary=:all: --platform ... --require-hashes``
  into ``<cache>/wheels/<arch>-cp<python>/``; a build whose every pin is already cached (a wheel
  whose sha256 is one of the pin's hashes) touches no network at all;
- the workspace members are built with ``uv build --wheel``;
- ``aarch64_report`` asks pip, without downloading, which pins have no aarch64 wheel.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

MEMBERS = ("rae-sync", "rae-models", "rae-edge", "rae-tablet-api")
EXPORT_PACKAGE = "rae-tablet-api"  # its dependency closure is the edge node
# The appliance runs the build's Python minor version (the installer checks it).
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
PLATFORM_TAGS = {
    "x86_64": ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_27_x86_64",
               "manylinux_2_28_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64",
               "linux_x86_64"],
    "aarch64": ["manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_27_aarch64",
                "manylinux_2_28_aarch64", "linux_aarch64"],
}
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


class BuildError(Exception):
    """The bundle cannot be built; the message says what is missing."""


@dataclass
class Pin:
    name: str
    version: str
    marker: str | None
    hashes: set[str] = field(default_factory=set)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def run(cmd: list[str], cwd: Path | None = None) -> str:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"{' '.join(cmd[:5])} ... failed ({r.returncode}):\n"
                         f"{(r.stderr or r.stdout)[-3000:]}")
    return r.stdout


def export_requirements(workspace: Path, uv: str) -> str:
    """The locked pins (with hashes) of the edge node's third-party dependencies."""
    return run([uv, "export", "--frozen", "--no-dev", "--package", EXPORT_PACKAGE,
                "--no-emit-workspace", "--no-header", "--format", "requirements-txt", "-q"],
               cwd=workspace)


def parse_pins(requirements: str) -> list[Pin]:
    pins: list[Pin] = []
    for line in requirements.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        m = _PIN.match(line.strip())
        if m:
            pins.append(Pin(normalize(m.group(1)), m.group(2), m.group(3)))
        elif pins and (h := _HASH.search(line)):
            pins[-1].hashes.add(h.group(1))
    return pins


def applies(pin: Pin) -> bool:
    """Whether the pin's marker holds on the target (CPython 3.11 on Linux)."""
    if not pin.marker:
        return True
    from packaging.markers import Marker

    env = {"python_version": PYTHON, "python_full_version": f"{PYTHON}.0",
           "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    return bool(Marker(pin.marker).evaluate(env))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def wheel_name(path: Path) -> tuple[str, str]:
    parts = path.name[:-4].split("-")
    return normalize(parts[0]), parts[1]


def _hash_index(folder: Path) -> dict[str, Path]:
    """sha256 -> wheel, with the digests remembered beside the cache (``.sha256`` files)."""
    out: dict[str, Path] = {}
    for whl in sorted(folder.glob("*.whl")):
        side = whl.with_name(whl.name + ".sha256")
        if side.exists() and side.stat().st_mtime >= whl.stat().st_mtime:
            digest = side.read_text().strip()
        else:
            digest = sha256_file(whl)
            side.write_text(digest)
        out[digest] = whl
    return out


def pip_command() -> list[str]:
    """A pip to download with: this interpreter's, else its base interpreter's."""
    for py in (sys.executable, getattr(sys, "_base_executable", ""), "python3"):
        if py and subprocess.run([py, "-m", "pip", "--version"],
                                 capture_output=True).returncode == 0:
            return [py, "-m", "pip"]
    raise BuildError("no pip found to download wheels with (python3 -m pip)")


def _platform_args(arch: str) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp",
            "--abi", f"cp{PYTHON.replace('.', '')}", "--abi", "abi3", "--abi", "none"]
    for tag in PLATFORM_TAGS[arch]:
        args += ["--platform", tag]
    return args


def fetch_wheels(pins: list[Pin], requirements: str, cache: Path,
                 arch: str = "x86_64") -> dict[str, Path]:
    """The wheel of every applicable pin, from the cache or downloaded into it."""
    folder = cache / "wheels" / f"{arch}-cp{PYTHON.replace('.', '')}"
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [p for p in pins if applies(p)]
    index = _hash_index(folder)
    if any(not (p.hashes & index.keys()) for p in wanted):
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(requirements)
        run([*pip_command(), "download", "--disable-pip-version-check", "--no-deps",
             "--require-hashes", "-q", *_platform_args(arch), "-r", f.name, "-d", str(folder)])
        Path(f.name).unlink()
        index = _hash_index(folder)
    chosen: dict[str, Path] = {}
    missing: list[str] = []
    for p in wanted:
        hits = [index[h] for h in sorted(p.hashes & index.keys())
                if wheel_name(index[h]) == (p.name, p.version)]
        if hits:
            chosen[p.name] = hits[0]
        else:
            missing.append(f"{p.name}=={p.version}")
    if missing:
        raise BuildError(f"no {arch} wheel matching the lock for: {', '.join(missing)}")
    return chosen


def aarch64_report(pins: list[Pin], requirements: str, cache: Path) -> dict[str, object]:
    """Which pins have no aarch64 wheel (pip resolves without downloading; cached by the
    requirements' hash). Markers are evaluated for the target Python on Linux."""
    key = hashlib.sha256(f"{PYTHON}\n{requirements}".encode()).hexdigest()[:16]
    cached = cache / "aarch64" / f"{key}.json"
    if cached.exists():
        report: dict[str, object] = json.loads(cached.read_text())
        return report
    wanted = [p for p in pins if applies(p)]
    left = list(wanted)
    missing: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        while left:
            req = Path(tmp) / "req.txt"
            req.write_text("".join(f"{p.name}=={p.version}\n" for p in left))
            r = subprocess.run(
                [*pip_command(), "install", "--dry-run", "--ignore-installed", "--no-deps",
                 "--disable-pip-version-check", "-q", "--target", str(Path(tmp) / "t"),
                 *_platform_args("aarch64"), "-r", str(req)],
                capture_output=True, text=True)
            if r.returncode == 0:
                break
            m = re.search(r"No matching distribution found for ([A-Za-z0-9_.\-]+)", r.stderr)
            bad = next((p for p in left if m and normalize(m.group(1)) == p.name), None)
            if bad is None:
                raise BuildError(f"aarch64 check failed: {r.stderr[-2000:]}")
            missing.append({"name": bad.name, "version": bad.version,
                            "reason": "no manylinux/linux aarch64 wheel for CPython 3.11"})
            left.remove(bad)
    report = {"checked": True, "python": PYTHON, "pins": len(wanted),
              "available": len(wanted) - len(missing), "missing": missing}
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(report, indent=2))
    return report


def build_members(workspace: Path, uv: str, out: Path) -> dict[str, Path]:
    """Builds each edge workspace member's wheel into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}
    for member in MEMBERS:
        with tempfile.TemporaryDirectory() as tmp:  # uv also leaves a .gitignore there
            run([uv, "build", "--package", member, "--wheel", "--out-dir", tmp, "-q"],
                cwd=workspace)
            new = sorted(Path(tmp).glob("*.whl"))
            if len(new) != 1:
                raise BuildError(f"uv build --package {member} made {len(new)} wheels")
            built[member] = Path(shutil.move(new[0], out / new[0].name))
    return built
