"""What an image installs: pinned third-party packages, and shipyard itself as a wheel.

Two honest sources, chosen by where shipyard runs from:

- **a source checkout** (this package under `src/`, next to `pyproject.toml` and `uv.lock`): the
  lock file, exported by `uv export --frozen --no-dev --no-emit-project --extra serve` (plus the
  `onnx` extra for a model served through ONNX) to a requirements.txt where every package is
  pinned with its sha256, installed with `pip install --require-hashes`; shipyard's wheel is
  built from the checkout by `uv build --wheel`.
- **an installed shipyard** (a wheel in site-packages, no lock file around): the versions of
  the installed distributions that shipyard[serve] (and the model's packages) need, walked
  from their `Requires-Dist` and pinned `name==version` as they are installed here. pip has no
  hashes for those, so they are pinned but not hash-checked. shipyard's wheel is repacked from
  the installed files and metadata, so the image runs the code that made it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import shipyard
from shipyard.errors import InvalidInput, ShipyardError

LOCK_SOURCE = "uv.lock"
INSTALLED_SOURCE = "installed distributions"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them: `Scikit_Learn` -> `scikit-learn`."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirements:
    """A requirements.txt, where it came from, and the versions it pins."""

    text: str
    source: str  # LOCK_SOURCE or INSTALLED_SOURCE
    hashed: bool  # every package carries its sha256: install with --require-hashes
    pins: dict[str, set[str]] = field(default_factory=dict)  # normalised name -> versions

    def missing_or_different(self, needed: Mapping[str, str]) -> tuple[list[str], list[str]]:
        """Of `needed` ({distribution: version}), those not pinned, and those pinned otherwise."""
        missing, different = [], []
        for name, wanted in sorted(needed.items()):
            pinned = self.pins.get(normalise(name))
            if pinned is None:
                missing.append(f"{name} {wanted}")
            elif wanted not in ("", "*") and wanted not in pinned:
                different.append(f"{name} {wanted} (pinned: {', '.join(sorted(pinned))})")
        return missing, different


def parse_pins(text: str) -> dict[str, set[str]]:
    pins: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            pins.setdefault(normalise(match.group(1)), set()).add(match.group(2))
    return pins


# -- where shipyard runs from -----------------------------------------------------------------


def source_tree() -> Path | None:
    """The checkout this shipyard runs from (pyproject.toml naming shipyard, and uv.lock)."""
    root = Path(shipyard.__file__).resolve().parent.parent.parent
    pyproject = root / "pyproject.toml"
    if not (pyproject.is_file() and (root / "uv.lock").is_file()):
        return None
    try:
        name = tomllib.loads(pyproject.read_text()).get("project", {}).get("name")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return root if name == "shipyard" else None


def uv_binary() -> Path:
    """uv beside this Python (a venv made by `make setup` has it), else on PATH."""
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("uv")
    if found is None:
        raise InvalidInput(
            "building from a source checkout needs uv, to export the lock file and build "
            "shipyard's wheel: `pip install uv` (or `make setup`), then retry"
        )
    return Path(found)


def _run_uv(arguments: list[str], root: Path, what: str) -> str:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    try:
        done = subprocess.run(
            [str(uv_binary()), *arguments],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ShipyardError(f"cannot {what} with uv: {exc}") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise ShipyardError(
            f"cannot {what}: `uv {' '.join(arguments)}` in {root} failed: {' / '.join(detail)}"
        )
    return done.stdout


# -- requirements -------------------------------------------------------------------------------


def locked_requirements(root: Path, extras: Iterable[str]) -> Requirements:
    """The lock file's pins for shipyard's runtime dependencies and `extras`, with hashes."""
    arguments = ["export", "--frozen", "--no-dev", "--no-emit-project", "--format"]
    arguments.append("requirements.txt")
    for extra in sorted(set(extras)):
        arguments += ["--extra", extra]
    text = _run_uv(arguments, root, "export the lock file")
    return Requirements(text=text, source=LOCK_SOURCE, hashed=True, pins=parse_pins(text))


def installed_requirements(extras: Iterable[str], packages: Iterable[str] = ()) -> Requirements:
    """Pins of the installed distributions shipyard[extras] and `packages` need, walked from
    their metadata; a dependency that is not installed here (its marker excluded it) is left
    out, as pip left it out."""
    versions: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    queue: list[tuple[str, frozenset[str]]] = [("shipyard", frozenset(extras))]
    queue += [(name, frozenset()) for name in packages]
    while queue:
        name, wanted = queue.pop()
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = normalise(distribution.metadata["Name"] or name)
        if key != "shipyard":
            versions[key] = distribution.version
        for requirement in distribution.requires or []:
            parsed = _dependency(requirement, wanted)
            if parsed is None:
                continue
            dependency, dependency_extras = parsed
            for extra in ("", *dependency_extras):
                if (normalise(dependency), extra) not in seen:
                    seen.add((normalise(dependency), extra))
                    queue.append((dependency, frozenset({extra} - {""})))
    lines = [
        f"# Pinned from the {INSTALLED_SOURCE} shipyard {shipyard.__version__} ran in (no lock "
        "file was found),",
        "# so without hashes; build from a checkout with uv.lock for hash-checked installs.",
        *(f"{name}=={version}" for name, version in sorted(versions.items())),
    ]
    text = "\n".join(lines) + "\n"
    return Requirements(text=text, source=INSTALLED_SOURCE, hashed=False, pins=parse_pins(text))


def _dependency(requirement: str, extras: frozenset[str]) -> tuple[str, list[str]] | None:
    """(name, its extras) of a Requires-Dist line that applies with `extras`, else None."""
    spec, _, marker = requirement.partition(";")
    needs = _EXTRA_MARKER.findall(marker)
    if needs and not set(needs) & extras:
        return None
    match = _REQUIREMENT.match(spec)
    if match is None:
        return None
    named = [e.strip() for e in (match.group(2) or "").split(",") if e.strip()]
    return match.group(1), named


# -- shipyard's own wheel ---------------------------------------------------------------------


def build_wheel(root: Path, folder: Path) -> Path:
    """shipyard's wheel, built from the checkout at `root` by `uv build`, into `folder`."""
    with tempfile.TemporaryDirectory(prefix="shipyard-wheel-") as scratch:
        _run_uv(["build", "--wheel", "--out-dir", scratch, str(root)], root, "build the wheel")
        built = sorted(Path(scratch).glob("shipyard-*.whl"))
        if len(built) != 1:
            raise ShipyardError(f"`uv build` made {len(built)} shipyard wheels; expected one")
        folder.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(built[0], folder / built[0].name))


def repack_wheel(folder: Path) -> Path:
    """shipyard's wheel made from the installed package and its metadata, into `folder`."""
    distribution = metadata.distribution("shipyard")
    version = distribution.version
    dist_info = f"shipyard-{version}.dist-info"
    package = Path(shipyard.__file__).resolve().parent
    entries: list[tuple[str, bytes]] = []
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            entries.append((f"shipyard/{path.relative_to(package).as_posix()}", path.read_bytes()))
    metadata_text = distribution.read_text("METADATA")
    if not metadata_text:
        raise ShipyardError("the installed shipyard has no METADATA: reinstall it")
    entries.append((f"{dist_info}/METADATA", metadata_text.encode()))
    entry_points = distribution.read_text("entry_points.txt")
    if entry_points:
        entries.append((f"{dist_info}/entry_points.txt", entry_points.encode()))
    wheel = "Wheel-Version: 1.0\nGenerator: shipyard (repacked)\nRoot-Is-Purelib: true\n"
    entries.append((f"{dist_info}/WHEEL", (wheel + "Tag: py3-none-any\n").encode()))
    record = [f"{name},sha256={_urlsafe_sha256(data)},{len(data)}" for name, data in entries]
    record.append(f"{dist_info}/RECORD,,")
    entries.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"shipyard-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return target


def _urlsafe_sha256(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
