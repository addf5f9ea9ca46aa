"""Shared fixtures: real data location, and ONE Ray instance for the whole session."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

# One intra-op thread per process: the suite runs Ray workers, servers and subprocesses beside the
# test process on 2 cores, and OpenMP threads that spin-wait on a busy core were measured here to slow
# a tiny training loop ~100x (200 vs 27,000 images/s). Set before torch is imported; inherited by
# subprocesses.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CNNSWEEP_DATA", REPO.parent / "shared" / "data"))


RAY_MARK = re.compile(r"\bmark\.ray\b")  # `pytest.mark.ray` on the module (pytestmark) or on a test
DOCS_UNIT, RAY_UNIT = "ray-docs", "ray"  # the two xdist work units of the Ray test files (RayTestsTogether)


@functools.cache
def is_ray_file(path: Path) -> bool:
    """Whether a test file starts or uses Ray: it carries the `ray` marker somewhere. Decided from the source
    text, because pytest-xdist's scheduler sees node ids, not items; `pytest_collection_modifyitems` below
    checks that the markers agree with what the items use."""
    return bool(RAY_MARK.search(path.read_text()))


def pytest_collection_modifyitems(config, items):
    for item in items:
        marked = item.get_closest_marker("ray") is not None
        if "ray_session" in item.fixturenames and not marked:
            raise pytest.UsageError(f"{item.nodeid} uses the ray_session fixture: mark it `pytest.mark.ray`")
        if marked and not is_ray_file(item.path):
            raise pytest.UsageError(f"{item.nodeid}: its `ray` marker is not spelled `mark.ray` in its file")


class RayTestsTogether:
    """`make test` runs two pytest-xdist workers. The Ray test files form two work units, each run by one
    worker in file order, as a plain `pytest` would: "ray-docs" (tests/docs: the documented commands, each
    starting its own private Ray instance, around one project whose module fixtures must be built once)
    and "ray" (every other file with the `ray` marker, around the session's shared instance). The two
    start first, one per worker: they are the longest, and each leaves a core idle while it waits on its
    processes. Every other file is its own unit (module fixtures built once), taken by whichever worker
    is free."""

    @staticmethod
    def work_unit(root: Path, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        if not is_ray_file(root / path):
            return path
        return DOCS_UNIT if path.startswith("tests/docs/") else RAY_UNIT

    def pytest_xdist_make_scheduler(self, config, log):
        from xdist.scheduler import LoadScopeScheduling

        class Scheduling(LoadScopeScheduling):  # xdist's --dist loadscope, with work_unit as the scope
            def _split_scope(self, nodeid: str) -> str:
                return RayTestsTogether.work_unit(config.rootpath, nodeid)

            def _assign_work_unit(self, node) -> None:
                ray_units = [scope for scope in self.workqueue if scope in (DOCS_UNIT, RAY_UNIT)]
                if ray_units:  # the queue is ordered by test count; the Ray units go first
                    self.workqueue.move_to_end(ray_units[0], last=False)
                super()._assign_work_unit(node)

        return Scheduling(config, log)


def pytest_configure(config):
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(RayTestsTogether())


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """An (untrained) exported 8x8 gray, 3-class model ("a", "b", "c"), for serving and CLI tests."""
    from cnnsweep.config import ModelConfig
    from cnnsweep.export import OnnxModelInfo, export_onnx
    from cnnsweep.models import build_model
    from cnnsweep.transforms import Preprocess

    torch.manual_seed(0)
    pre = Preprocess(source_size=(8, 8), source_channels=1, resize_to=8, mean=(0.5,), std=(0.2,))
    model = build_model(ModelConfig(num_stages=1, width=4, convs_per_stage=1), 3, 1, 8).eval()
    return export_onnx(model, OnnxModelInfo(["a", "b", "c"], pre), tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (GTSRB pickles, AHE folders, MNIST IDX); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set CNNSWEEP_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def gtsrb_root(shared_data: Path) -> Path:
    root = shared_data / "gtsrb"
    if not (root / "train.pickle").is_file():
        pytest.skip(f"GTSRB pickles not found in {root}")
    return root


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance shared by every Ray test of this pytest process (starting one costs ~10 s on 2
    cores; under `make test` the "ray" worker starts it, and the "ray-docs" one for its one test that needs it)."""
    ray = pytest.importorskip("ray")
    from cnnsweep.distributed.cluster import start_ray, stop_ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    start_ray(num_cpus=4)  # logical CPUs: 2 Train workers + drivers/controllers fit on a 2-core box
    yield ray
    stop_ray()


# ---------------------------------------------------------------- tiny real GTSRB members (ensembles, predict)

def _tiny_gtsrb(root: Path, seed: int, grayscale: bool) -> dict:
    return {"name": "tiny", "data": {"name": "gtsrb_pickle", "root": str(root), "max_train_samples": 1500,
                                     "max_val_samples": 300, "grayscale": grayscale},
            "model": {"num_stages": 2, "width": 6, "convs_per_stage": 1},
            "train": {"epochs": 1, "batch_size": 64, "lr": 3e-3, "amp": "off", "seed": seed}}


@pytest.fixture(scope="session")
def tiny_gtsrb_sweep(gtsrb_root: Path, tmp_path_factory) -> Path:
    """A sweep-style folder: 3 tiny members trained on real GTSRB (one grayscale, two colour; a few
    seconds each) and the leaderboard.csv `cnnsweep tune` would write for them (rank, trial_id, val/acc,
    checkpoint)."""
    import csv

    from cnnsweep.config import validate_config
    from cnnsweep.data import load_dataset
    from cnnsweep.engine import LocalHooks, fit

    folder, rows = tmp_path_factory.mktemp("tiny-sweep"), []
    for seed, gray in [(0, False), (1, True), (2, False)]:
        trial = f"t{seed}_{'gray' if gray else 'rgb'}"
        cfg = validate_config(_tiny_gtsrb(gtsrb_root, seed, gray))
        hooks = LocalHooks(output=folder / trial, device="cpu")
        result = fit(cfg, load_dataset(cfg.data), hooks)
        rows.append({"trial_id": trial, "val/acc": result.metrics["val/acc"], "checkpoint": str(hooks.last_checkpoint)})
    rows.sort(key=lambda r: -r["val/acc"])
    with open(folder / "leaderboard.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["rank", "trial_id", "val/acc", "checkpoint"])
        writer.writeheader()
        writer.writerows({"rank": i, **r} for i, r in enumerate(rows, start=1))
    return folder


@pytest.fixture
def disk_full_after():
    """`with disk_full_after(n): ...`: every file write past byte n fails with EFBIG, like a disk
    filling up mid-write (RLIMIT_FSIZE, this process only, restored after the block). Tests of
    "a failed write leaves the old file or the new one" run the real writers under it."""
    import contextlib
    import resource
    import signal

    @contextlib.contextmanager
    def limit(nbytes: int):
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, old_handler)

    return limit


@pytest.fixture
def another_process_holds():
    """`with another_process_holds(out): ...`: hold <out>/.lock as another cnnsweep process would
    (an exclusive flock on its own open file), for the lock tests of `train` and `tune`."""
    import contextlib
    import fcntl

    @contextlib.contextmanager
    def hold(out: Path):
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield
        finally:
            os.close(fd)

    return hold


# ---------------------------------------------------------------- crafted model files (serve, predict, analyze)

def _external_weights(proto) -> None:
    import onnx

    tensor = next(t for t in proto.graph.initializer if t.name.endswith("head.fc.weight"))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in {"location": "secret.bin", "offset": "0", "length": "48"}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _more_logits_than_class_names(proto) -> None:
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 7


UNTRUSTWORTHY_EDITS = {"external data": _external_weights, "3 classes": _more_logits_than_class_names}


@pytest.fixture
def plant_onnx(tiny_onnx):
    """plant(words, folder) -> folder/m.onnx: tiny_onnx edited as UNTRUSTWORTHY_EDITS[words] says (the
    refusal names `words`), with secret.bin beside it, which ONNX Runtime would read into the weights."""
    import onnx

    def plant(words: str, folder: Path) -> Path:
        proto = onnx.load(str(tiny_onnx))
        UNTRUSTWORTHY_EDITS[words](proto)
        (folder / "secret.bin").write_bytes(b"s3cret" * 8)
        (folder / "m.onnx").write_bytes(proto.SerializeToString())
        return folder / "m.onnx"

    return plant
