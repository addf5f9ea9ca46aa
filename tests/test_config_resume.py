"""--resume's config check: differences named by dotted path; the same config passes."""

from __future__ import annotations

import pytest

from cnnsweep.config import ConfigError, check_resumed_config, diff_configs, save_config, validate_config


def test_diff_configs_names_each_difference_by_dotted_path():
    old = {"train": {"lr": 0.001, "epochs": 2}, "model": {"width": 8}, "search": None}
    new = {"train": {"lr": 0.003, "epochs": 2}, "model": {"width": 8, "dropout": 0.1}, "search": {"seed": 1}}
    assert diff_configs(old, new) == ["train.lr: 0.001 -> 0.003", "model.dropout: (absent) -> 0.1",
                                      'search: null -> {"seed": 1}']
    assert diff_configs(old, old) == []


def test_check_resumed_config_refuses_a_changed_config_and_says_what_differs(tmp_path):
    cfg = validate_config({"train": {"lr": 1e-3, "epochs": 2}, "search": {"space": {"train.lr": {"choice": [1]}}}})
    saved = save_config(cfg, tmp_path / "sweep.yaml")
    check_resumed_config(cfg, saved)  # the same config: no error
    changed = validate_config({"train": {"lr": 3e-3, "epochs": 2}, "search": {"space": {"train.lr": {"choice": [2]}}}})
    with pytest.raises(ConfigError) as err:
        check_resumed_config(changed, saved)
    msg = str(err.value)
    assert "train.lr: 0.001 -> 0.003" in msg and "search.space.train.lr.choice: [1] -> [2]" in msg
    assert "\n" not in msg and "--output" in msg
