import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "browser_setup.py"


@pytest.fixture
def setup_module():
    spec = importlib.util.spec_from_file_location("browser_setup", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nothing_to_do_when_chromium_is_there(setup_module, monkeypatch, tmp_path, capsys):
    present = tmp_path / "chromium"
    present.write_text("")
    monkeypatch.setattr(setup_module, "CHROMIUM", present)
    monkeypatch.setattr(setup_module, "run", lambda command: pytest.fail("must not run apt"))
    assert setup_module.main() == 0
    assert "is installed" in capsys.readouterr().out


def test_never_fails_the_run_when_apt_is_impossible(setup_module, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(setup_module, "CHROMIUM", tmp_path / "missing")
    monkeypatch.setattr(setup_module.os, "geteuid", lambda: 1000)
    assert setup_module.main() == 0
    assert "not root" in capsys.readouterr().out


def test_installs_with_apt_as_root(setup_module, monkeypatch, tmp_path, capsys):
    target = tmp_path / "chromium"
    commands = []

    def fake_run(command):
        commands.append(command)
        if command[:2] == ["apt-get", "install"]:
            target.write_text("")
        return True

    monkeypatch.setattr(setup_module, "CHROMIUM", target)
    monkeypatch.setattr(setup_module.os, "geteuid", lambda: 0)
    monkeypatch.setattr(setup_module.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(setup_module, "run", fake_run)
    assert setup_module.main() == 0
    assert commands == [["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]]
    assert "installed" in capsys.readouterr().out
