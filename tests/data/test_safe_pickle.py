"""The restricted unpickler: numpy arrays load, anything that could run code is refused."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from cnnsweep.data import DataError, load_pickle


class RunsCommand:
    """What an attacker ships: unpickling calls os.system(command)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class CallsEval:
    def __reduce__(self):
        return eval, ("__import__('os').getpid()",)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_that_runs_a_command_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "train.pickle"
    payload = {"features": RunsCommand(f"touch {marker}"), "labels": np.zeros(3, np.uint8)}
    path.write_bytes(pickle.dumps(payload, protocol=protocol))

    with pytest.raises(DataError) as err:
        load_pickle(path)
    assert "refused to load" in str(err.value) and "system" in str(err.value)
    assert str(path) in str(err.value)
    assert not marker.exists()

    # the file really is dangerous: the standard unpickler runs the command
    pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("payload", [CallsEval(), {"x": getattr}, np.array([1, "a"], dtype=object)],
                         ids=["eval", "getattr", "object-array"])
def test_other_globals_and_object_arrays_are_refused(tmp_path, payload):
    path = tmp_path / "x.pickle"
    path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError, match="refused to load"):
        load_pickle(path)


def test_arrays_scalars_and_containers_round_trip(tmp_path):
    obj = {"features": np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3), "labels": np.array([3, 1]),
           "mean": np.float32(1.5), "sizes": [(32, 32), (40, 41)], "name": "valid"}
    for protocol in (0, 2, 4, 5):
        path = tmp_path / f"p{protocol}.pickle"
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
        back = load_pickle(path)
        np.testing.assert_array_equal(back["features"], obj["features"])
        assert back["features"].dtype == np.uint8 and back["mean"] == np.float32(1.5)
        assert back["sizes"] == obj["sizes"] and back["name"] == "valid"


def test_pickles_written_by_numpy_1_load(tmp_path):
    """numpy < 2 names numpy.core.multiarray; numpy 2 renamed it numpy._core."""
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    data = pickle.dumps(arr, protocol=2)
    assert b"numpy._core.multiarray" in data
    path = tmp_path / "old.pickle"
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    np.testing.assert_array_equal(load_pickle(path), arr)


def test_not_a_pickle_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.pickle"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match="not a readable pickle"):
        load_pickle(path)
    with pytest.raises(DataError, match="cannot read"):
        load_pickle(tmp_path / "missing.pickle")


def test_real_gtsrb_pickles_load(gtsrb_root):
    valid = load_pickle(gtsrb_root / "valid.pickle")
    assert valid["features"].shape == (4320, 32, 32, 3) and valid["features"].dtype == np.uint8
    assert valid["labels"].shape == (4320,) and set(np.unique(valid["labels"])) == set(range(43))
    train = load_pickle(gtsrb_root / "train.pickle")
    assert train["features"].shape == (34889, 32, 32, 3)
