"""Bundle checking, path rewriting and the private perf-profile copies (no worker)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from genie_bundles import write_bundle

from antinet_tui.engine.errors import ModelNotFound
from antinet_tui.engine.genie.bundle import (
    GenieBundle,
    read_back_perf_profile,
    with_perf_profile,
)
from antinet_tui.engine.genie.errors import GenieBundleError


def test_relative_references_become_absolute(bundle):
    opened = GenieBundle.open(bundle)
    engine = opened.config["dialog"]["engine"]
    assert Path(opened.config["dialog"]["tokenizer"]["path"]) == bundle.parent / "tokenizer.json"
    assert Path(engine["backend"]["extensions"]).is_absolute()
    assert [p.name for p in opened.ctx_bins] == ["model_part_1_of_2.bin", "model_part_2_of_2.bin"]
    assert opened.context_size == 512 and opened.bundled_perf_profile == "burst"


def test_cwd_relative_paths_as_qualcomm_samples_write_them(tmp_path, monkeypatch):
    """qai_appbuilder's samples name files relative to the samples folder, with backslashes."""
    write_bundle(tmp_path / "genie" / "models" / "m")
    config_path = tmp_path / "genie" / "models" / "m" / "genie_config.json"
    config = json.loads(config_path.read_text())
    config["dialog"]["tokenizer"]["path"] = "genie\\models\\m\\tokenizer.json"
    config["dialog"]["ssd-q1"] = {"forecast-prefix-name": "genie\\models\\m\\"}
    config_path.write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path)
    opened = GenieBundle.open(config_path)
    assert Path(opened.config["dialog"]["tokenizer"]["path"]) == config_path.parent / "tokenizer.json"
    prefix = opened.config["dialog"]["ssd-q1"]["forecast-prefix-name"]
    assert prefix == str(config_path.parent) + os.sep


def test_every_missing_file_is_named(bundle):
    (bundle.parent / "htp_backend_ext_config.json").unlink()
    (bundle.parent / "model_part_2_of_2.bin").unlink()
    with pytest.raises(GenieBundleError) as error:
        GenieBundle.open(bundle)
    assert "HTP extension config 'htp_backend_ext_config.json'" in str(error.value)
    assert "context binary 'model_part_2_of_2.bin'" in str(error.value)


def test_not_a_genie_config(tmp_path):
    with pytest.raises(ModelNotFound, match="genie_config.json"):
        GenieBundle.open(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{\"model\": 1}")
    with pytest.raises(GenieBundleError, match="no 'dialog' section"):
        GenieBundle.open(tmp_path / "x.json")


def test_private_copy_carries_the_mode_and_leaves_the_bundle_alone(bundle, tmp_path):
    before = {p.name: p.read_bytes() for p in bundle.parent.iterdir()}
    private = GenieBundle.open(bundle).write_private("balanced", tmp_path / "state")
    assert read_back_perf_profile(private) == ("balanced", tmp_path / "state" / "htp_backend_ext_config.json")
    htp = json.loads((tmp_path / "state" / "htp_backend_ext_config.json").read_text())
    assert htp["devices"][0]["soc_model"] == 60  # everything else is kept
    assert {p.name: p.read_bytes() for p in bundle.parent.iterdir()} == before


def test_bundle_settings_kept_when_no_mode_is_asked(bundle, tmp_path):
    private = GenieBundle.open(bundle).write_private(None, tmp_path / "state")
    assert read_back_perf_profile(private)[0] == "burst"


def test_perf_profile_reaches_every_core_and_configs_without_cores():
    two_cores = {"devices": [{"cores": [{"core_id": 0}, {"core_id": 1, "perf_profile": "burst"}]}]}
    updated = with_perf_profile(two_cores, "power_saver")
    assert [c["perf_profile"] for c in updated["devices"][0]["cores"]] == ["power_saver"] * 2
    assert two_cores["devices"][0]["cores"][1]["perf_profile"] == "burst"
    assert with_perf_profile({}, "burst")["devices"] == [{"cores": [{"core_id": 0, "perf_profile": "burst"}]}]
