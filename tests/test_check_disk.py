"""scripts/check_disk.py: `make install` stops early, naming the free space and the fix, on a full disk."""
import shutil

import pytest
from scripts_loader import load_script

check_disk = load_script("check_disk")


def fake_usage(free_bytes):
    return lambda path: shutil._ntuple_diskusage(total=10**12, used=10**12 - free_bytes, free=free_bytes)


def test_enough_space_passes(monkeypatch, tmp_path):
    monkeypatch.setattr(check_disk.shutil, "disk_usage", fake_usage(int(9e9)))
    assert check_disk.check_free_space(tmp_path / "venv") is None
    assert check_disk.main([str(tmp_path / "venv")]) == 0


def test_full_disk_names_space_and_fix(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(check_disk.shutil, "disk_usage", fake_usage(int(3.5e9)))
    assert check_disk.main([str(tmp_path / "not" / "yet" / ".venv")]) == 1
    message = capsys.readouterr().err
    assert "only 3.5 GB free" in message and "about 8 GB" in message
    assert str(tmp_path) in message  # the nearest existing folder, since the venv does not exist yet
    assert "make VENV=" in message


def test_threshold_is_configurable(monkeypatch, tmp_path):
    monkeypatch.setattr(check_disk.shutil, "disk_usage", fake_usage(int(3.5e9)))
    assert check_disk.main([str(tmp_path), "--need-gb", "3"]) == 0
    with pytest.raises(SystemExit):
        check_disk.main([str(tmp_path), "--need-gb", "lots"])
