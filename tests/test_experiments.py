import urllib.error
import urllib.request

import pytest

from nullspace_utils import experiments


def test_load_result_reads_the_checkout():
    result = experiments.load_result("book/results/teaching/watermark.json")
    assert result["profile"] == "teaching" and result["provenance"]["commit"]


def test_load_result_offline_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match="could not be fetched"):
        experiments.load_result("book/results/teaching/missing.json")


def test_every_committed_result_records_its_provenance():
    for path in sorted((experiments.RESULTS).glob("*/*.json")):
        provenance = experiments.load_result(str(path.relative_to(experiments.REPOSITORY_ROOT)))["provenance"]
        assert provenance["command"].startswith("python -m nullspace_utils.experiments"), path
        assert len(provenance["commit"]) == 40 and provenance["device"], path
