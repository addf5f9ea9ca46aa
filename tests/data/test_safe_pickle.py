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


# ---------------------------------------------------------------- crafted pickles (issue 10)
# Each of these loaded without complaint before the budget / fresh-dtype checks.

from numpy._core.multiarray import _reconstruct  # noqa: E402

from cnnsweep.data.gtsrb_pickle import MAX_NUM_CLASSES, load_gtsrb_pickle  # noqa: E402


class Reduce:
    """Pickles as `fn(*args)` (then BUILD with `state`, when given): lets a test write any opcode stream."""

    def __init__(self, fn, args, state=None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def _write(tmp_path, obj, protocol=2, name="train.pickle"):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def test_huge_shape_from_a_tiny_file_is_refused_before_allocating(tmp_path):
    n = 2 ** 32 // (32 * 32 * 3)  # 4 GiB of uint8 images that would pass the GTSRB checks
    payload = {"features": Reduce(np.ndarray, ((n, 32, 32, 3), "u1")), "labels": Reduce(np.ndarray, ((n,), "u1"))}
    path = _write(tmp_path, payload)
    assert path.stat().st_size < 200
    with pytest.raises(DataError, match="larger than the file allows"):
        load_pickle(path)
    with pytest.raises(DataError, match="larger than the file allows"):  # same through _reconstruct's state
        load_pickle(_write(tmp_path, Reduce(_reconstruct, (np.ndarray, (0,), b"b"),
                                            (1, (n,), np.dtype("u1"), False, b"")),
                                     protocol=4, name="r.pickle"))


def test_one_array_referenced_many_times_counts_every_time(tmp_path):
    big = np.zeros(1 << 20, np.uint8)  # 1 MiB, stored once; the memo makes 64 references cost 2 bytes each
    path = _write(tmp_path, {"features": [big] * 64})
    assert path.stat().st_size < 2 << 20
    with pytest.raises(DataError, match="larger than the file allows"):
        load_pickle(path)


def test_exponential_reuse_of_lists_is_refused(tmp_path):
    node = [0] * 10
    for _ in range(8):
        node = [node] * 10  # 10^9 leaves from a few hundred bytes: np.asarray of it would need 8 GB
    with pytest.raises(DataError, match="object references"):
        load_pickle(_write(tmp_path, {"labels": node}))


@pytest.mark.parametrize("payload", [Reduce(np.ndarray, ((3,), "O")),
                                     Reduce(_reconstruct, (np.ndarray, (3,), "O")),
                                     Reduce(np.ndarray, ((3,), "U4"))],
                         ids=["ndarray-O", "reconstruct-O", "string"])
def test_object_dtype_given_as_a_string_is_refused(tmp_path, payload):
    with pytest.raises(DataError, match="refused to load.*dtype"):
        load_pickle(_write(tmp_path, payload))


def test_build_rewriting_dtype_flags_is_refused(tmp_path):
    # dtype('u1') whose BUILD state sets flags 63 (NPY_OBJECT_DTYPE_FLAGS): it now claims to hold objects
    tampered = Reduce(np.dtype, ("u1", False, True), (3, "|", None, None, None, -1, -1, 63))
    array = Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (8,), tampered, False, b"\0" * 8))
    with pytest.raises(DataError, match="refused to load.*flags were rewritten"):
        load_pickle(_write(tmp_path, {"features": array}))


def test_loaded_arrays_are_plain_ndarrays_with_fresh_dtypes(tmp_path):
    back = load_pickle(_write(tmp_path, {"x": np.arange(6, dtype=np.int16).reshape(2, 3)}, protocol=4))
    assert type(back["x"]) is np.ndarray and back["x"].dtype == np.int16
    assert back["x"].dtype.flags == np.dtype(np.int16).flags


@pytest.mark.parametrize("label", [MAX_NUM_CLASSES, 10 ** 7, -1])
def test_gtsrb_labels_out_of_range_are_refused(tmp_path, label):
    x = np.zeros((2, 4, 4, 3), np.uint8)
    _write(tmp_path, {"features": x, "labels": np.array([0, label], np.int64)})
    with pytest.raises(DataError, match=f"label {label} out of range"):
        load_gtsrb_pickle(tmp_path)  # no label_names.csv: before, 10^7 labels meant 10^7 class names


def test_gtsrb_features_must_be_arrays_not_lists(tmp_path):
    _write(tmp_path, {"features": [[[[0, 0, 0]]]], "labels": [0]})
    with pytest.raises(DataError, match="must be numpy arrays"):
        load_gtsrb_pickle(tmp_path)
