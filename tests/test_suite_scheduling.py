"""The test suite's own scheduling (tests/conftest.py): under `make test`'s two pytest-xdist workers, every
file that starts or uses Ray is in one of two work units (the documented commands, and the rest), each
run in order by one worker."""

from __future__ import annotations

import pytest


def test_ray_files_share_two_units_and_the_others_are_one_unit_each(pytestconfig):
    pytest.importorskip("xdist")
    [plugin] = [p for p in pytestconfig.pluginmanager.get_plugins() if type(p).__name__ == "RayTestsTogether"]
    root = pytestconfig.rootpath
    docs = ["tests/docs/test_documented_commands.py::test_make_demo_writes_the_report",
            "tests/docs/test_serve_manifests.py::test_serve_run_config_yaml_serves_a_real_model_and_stops_cleanly"]
    assert {plugin.work_unit(root, n) for n in docs} == {"ray-docs"}
    ray_tests = ["tests/distributed/test_tune.py::test_a_sweep_whose_last_trial_is_stopped_early",
                 "tests/cli/test_serve.py::test_serve_process_exits_0_on_sigterm_and_ctrl_c[SIGTERM]"]
    assert {plugin.work_unit(root, n) for n in ray_tests} == {"ray"}
    assert plugin.work_unit(root, "tests/test_config.py::test_saved_config_round_trips") == "tests/test_config.py"
    assert plugin.work_unit(root, "tests/sweep/test_space.py::test_x[a::b]") == "tests/sweep/test_space.py"
