"""The house's shape (docs/architecture.md): layers that import one way, checked by
import-linter in ``make lint``; a wheel that owns only ``tillstream*`` import names; production
commands that never import the developer's machinery."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = {"tillstream": ".", "tillstream_edge": "producers", "tillstream_consumers": "consumers"}


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    path = ":".join(str(root / folder) for folder in dict.fromkeys(PACKAGES.values()))
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_layers_contract_holds() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def _scratch_copy(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for package, folder in PACKAGES.items():
        shutil.copytree(
            ROOT / folder / package,
            tmp_path / folder / package,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    return tmp_path


def test_an_import_from_the_core_up_into_the_edge_fails_the_contract(tmp_path: Path) -> None:
    root = _scratch_copy(tmp_path)
    (root / "tillstream" / "core" / "shortcut.py").write_text(
        "from tillstream_edge.outbox import Outbox\n"
    )
    result = _lint_imports(root)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "tillstream.core.shortcut -> tillstream_edge.outbox" in result.stdout


def test_a_service_importing_another_service_fails_the_contract(tmp_path: Path) -> None:
    root = _scratch_copy(tmp_path)
    erp = root / "consumers" / "tillstream_consumers" / "erp" / "peek.py"
    erp.write_text("from tillstream_consumers.crm import tables\n")
    result = _lint_imports(root)
    assert result.returncode != 0
    assert "tillstream_consumers.erp.peek -> tillstream_consumers.crm" in result.stdout


def test_the_wheel_owns_only_tillstream_import_names(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("tillstream-*.whl")
    names = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    packages = {n for n in names if not n.endswith(".dist-info")}
    assert packages == {"tillstream", "tillstream_edge", "tillstream_consumers"}
    assert all(n.startswith("tillstream") for n in names)


def test_production_services_never_import_the_developer_machinery() -> None:
    probe = (
        "import sys, tillstream.cli, tillstream_edge.edge, tillstream_consumers.runtime.runner, "
        "tillstream_consumers.erp, tillstream_consumers.crm, tillstream_consumers.analytics, "
        "tillstream_consumers.audit\n"
        "from click.testing import CliRunner\n"
        "assert CliRunner().invoke(tillstream.cli.main, ['edge', '--help']).exit_code == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
        "(['tillstream', 'dev'], ['tillstream', 'demo'], ['tillstream', 'simulate'])))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_developer_commands_are_still_listed_and_run() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tillstream", "dev", "kafka", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "KRaft" in result.stdout
