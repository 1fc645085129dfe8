"""Output folders written whole or not at all.

Everything is written into a hidden sibling of the output folder, which is renamed into place
only once it is complete; on any failure the sibling is removed and the output folder is left
as it was (absent, or empty).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shipyard.errors import InvalidInput


def check_output_folder(out: Path) -> Path:
    """`out` as an absolute path, once it is known to be absent or an empty folder."""
    out = Path(out).absolute()
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise InvalidInput(
            f"--out {out} exists and is not a folder: expected a new or empty folder"
        )
    if out.is_dir() and any(out.iterdir()):
        raise InvalidInput(
            f"--out {out} is not empty: expected a new or empty folder (nothing is overwritten); "
            "remove it or choose another"
        )
    return out


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A temporary folder beside `out`, renamed to `out` when the block succeeds."""
    out = check_output_folder(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        raise InvalidInput(f"cannot write to {out.parent}: {exc}") from None
    try:
        staging.chmod(0o755)
        yield staging
        try:
            # rename() replaces an empty folder atomically, and refuses a non-empty one.
            staging.rename(out)
        except OSError as exc:
            raise InvalidInput(
                f"cannot move the finished output into {out}: {exc}; it must be absent or empty"
            ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
