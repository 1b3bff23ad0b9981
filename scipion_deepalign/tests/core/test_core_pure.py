"""The core never imports pyworkflow or pwem (checked by import, in a clean interpreter)."""
import re
import subprocess
import sys
from pathlib import Path

import scipion_deepalign

PACKAGE_DIR = Path(scipion_deepalign.__file__).resolve().parent
CORE_DIR = PACKAGE_DIR / "core"
BLOCKED = ("pyworkflow", "pwem")


def _core_modules():
    names = []
    for path in sorted(CORE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


_BLOCKER = """
import importlib, importlib.abc, sys

BLOCKED = {blocked!r}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: the core must not import it")
        return None

sys.meta_path.insert(0, Blocker())
failed = []
for name in {modules!r}:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{{name}}: {{type(exc).__name__}}: {{exc}}")
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print("FAILED", failed)
print("LEAKED", leaked)
sys.exit(1 if failed or leaked else 0)
"""


def test_core_modules_found():
    modules = _core_modules()
    assert "scipion_deepalign.core.geometry" in modules
    assert "scipion_deepalign.core.io.star" in modules


def test_core_imports_without_pyworkflow_and_pwem():
    modules = ["scipion_deepalign"] + _core_modules()
    code = _BLOCKER.format(blocked=BLOCKED, modules=modules)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=PACKAGE_DIR.parent, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


def test_blocker_really_blocks():
    code = _BLOCKER.format(blocked=BLOCKED, modules=["pwem"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=PACKAGE_DIR.parent, timeout=120)
    assert result.returncode == 1 and "pwem is blocked" in result.stdout


_IMPORT_RE = re.compile(r"^\s*(?:from|import)\s+(?:pyworkflow|pwem)\b", re.MULTILINE)


def test_no_core_file_mentions_a_scipion_import():
    offenders = [str(p.relative_to(PACKAGE_DIR)) for p in sorted(CORE_DIR.rglob("*.py"))
                 if _IMPORT_RE.search(p.read_text())]
    assert not offenders, f"core files importing pyworkflow/pwem: {offenders}"
