import signal
import subprocess
import sys
import textwrap

import pytest

from lamfast.atomic import atomic_path, atomic_write_bytes
from conftest import same_lamfast


def test_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    atomic_write_bytes(target, b"first")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]  # no temp left


def test_sigkill_mid_write_leaves_old_file(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    script = textwrap.dedent(f"""
        import os, signal, sys
        from lamfast.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], **same_lamfast(tmp_path))
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"old"
