"""timm/<name>: small images, offline-only pretrained weights (local file, local HF cache)."""

from __future__ import annotations

import socket
from pathlib import Path
import time

import pytest
import torch
from safetensors.torch import save_file

from cnnsweep.config import ModelConfig
from cnnsweep.models import ModelError, build_model, create_model, load_weights

ARCH = "test_resnet"  # timm's tiny test model (~0.4M params); hf_hub_id timm/test_resnet.r160_in1k


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: pretrained loading must stay offline."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty, private Hugging Face cache (never the user's real one), offline (HF_HUB_OFFLINE=1)."""
    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def write_hf_cache_entry(cache, repo: str, tensors: dict[str, torch.Tensor], revision: str = "abc123"):
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/model.safetensors}."""
    entry = cache / f"models--{repo.replace('/', '--')}"
    (entry / "snapshots" / revision).mkdir(parents=True)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(revision)
    save_file(tensors, str(entry / "snapshots" / revision / "model.safetensors"))
    return entry / "snapshots" / revision / "model.safetensors"


def _source_weights(num_classes: int = 7) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return create_model(f"timm/{ARCH}", num_classes, 3, 32).state_dict()


def _assert_backbone_loaded(model, saved: dict[str, torch.Tensor]) -> None:
    for name, tensor in model.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(tensor, saved[name]), name


@pytest.mark.parametrize("channels", [1, 3])
def test_small_images_work(channels):
    model = create_model(f"timm/{ARCH}", 43, channels, 32)
    logits = model(torch.randn(2, channels, 32, 32))
    assert logits.shape == (2, 43)
    logits.sum().backward()


def test_vit_gets_the_image_size():
    model = create_model("timm/test_vit", 10, 3, 32)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_pretrained_without_weights_fails_fast_offline_and_says_where(no_network, hf_cache):
    start = time.perf_counter()
    with pytest.raises(ModelError) as info:
        build_model(ModelConfig(name=f"timm/{ARCH}", pretrained=True), 10, 3, 32)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "model.weights" in message and "HF_HUB_OFFLINE=1" in message
    assert str(hf_cache / "models--timm--test_resnet.r160_in1k") in message


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_file_loads_backbone_and_reinitialises_head(tmp_path, no_network, suffix):
    saved = _source_weights(num_classes=7)
    path = tmp_path / f"weights{suffix}"
    save_file(saved, str(path)) if suffix == ".safetensors" else torch.save(saved, path)
    model = build_model(ModelConfig(name=f"timm/{ARCH}", pretrained=True, weights=str(path)), 5, 3, 32)
    _assert_backbone_loaded(model, saved)
    assert model.fc.weight.shape == (5, saved["fc.weight"].shape[1])
    # the new head starts at zero: loss ln(5) at the first step, no random gradients into the backbone
    assert not model.fc.weight.any() and not model.fc.bias.any()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_same_number_of_classes_loads_the_head_too(tmp_path):
    saved = _source_weights(num_classes=5)
    save_file(saved, str(tmp_path / "w.safetensors"))
    model = create_model(f"timm/{ARCH}", 5, 3, 32)
    report = load_weights(model, tmp_path / "w.safetensors")
    assert report.skipped == [] and report.num_loaded == len(saved)
    assert torch.equal(model.fc.weight, saved["fc.weight"])


def test_rgb_weights_adapt_to_one_channel(tmp_path):
    saved = _source_weights()
    save_file(saved, str(tmp_path / "w.safetensors"))
    model = create_model(f"timm/{ARCH}", 5, 1, 32)
    report = load_weights(model, tmp_path / "w.safetensors")
    assert report.adapted == ["conv1.0.weight"]
    torch.testing.assert_close(model.conv1[0].weight, saved["conv1.0.weight"].sum(1, keepdim=True))


def test_hf_cache_is_used_offline(hf_cache, no_network):
    saved = _source_weights()
    write_hf_cache_entry(hf_cache, "timm/test_resnet.r160_in1k", saved)
    model = build_model(ModelConfig(name=f"timm/{ARCH}", pretrained=True), 5, 3, 32)
    _assert_backbone_loaded(model, saved)


def test_hf_home_locates_the_cache(tmp_path, monkeypatch, no_network):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    saved = _source_weights()
    write_hf_cache_entry(tmp_path / "home" / "hub", "timm/test_resnet.r160_in1k", saved)
    _assert_backbone_loaded(build_model(ModelConfig(name=f"timm/{ARCH}", pretrained=True), 5, 3, 32), saved)


def test_online_downloads_into_the_cache_once(hf_cache, monkeypatch):
    """Without HF_HUB_OFFLINE the missing file goes through huggingface_hub's download (faked here:
    no test touches the network), into the cache; the next build reads the cache and downloads nothing."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    saved, calls = _source_weights(), []

    def fake_download(repo_id, filename, revision=None, cache_dir=None, **kwargs):
        calls.append((repo_id, filename))
        return str(write_hf_cache_entry(cache_dir, repo_id, saved))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    _assert_backbone_loaded(build_model(ModelConfig(name=f"timm/{ARCH}", pretrained=True), 5, 3, 32), saved)
    _assert_backbone_loaded(build_model(ModelConfig(name=f"timm/{ARCH}", pretrained=True), 5, 3, 32), saved)
    assert calls == [("timm/test_resnet.r160_in1k", "model.safetensors")]


def test_online_download_failure_says_where(hf_cache, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")

    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(ModelError) as info:
        build_model(ModelConfig(name=f"timm/{ARCH}", pretrained=True), 5, 3, 32)
    assert "download failed (ConnectionError: Name or service not known)" in str(info.value)
    assert str(hf_cache / "models--timm--test_resnet.r160_in1k") in str(info.value)


def test_weights_for_another_architecture_are_refused(tmp_path):
    cnn = create_model("cnn", 5, 3, 32)
    torch.save(cnn.state_dict(), tmp_path / "cnn.pth")
    with pytest.raises(ModelError, match="does not match"):
        build_model(ModelConfig(name=f"timm/{ARCH}", weights=str(tmp_path / "cnn.pth")), 5, 3, 32)


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_code_carrying_weights_file_is_refused(tmp_path, capsys):
    torch.save({"fc.weight": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ModelError, match="weights-only"):
        load_weights(create_model(f"timm/{ARCH}", 5), tmp_path / "evil.pth")
    assert "code ran" not in capsys.readouterr().out


@pytest.mark.parametrize("name,match", [("missing.safetensors", "not found"), ("w.npz", "must end in")])
def test_bad_weight_paths(tmp_path, name, match):
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ModelError, match=match):
        load_weights(create_model(f"timm/{ARCH}", 5), tmp_path / name)


def test_input_size_checks_name_data_image_size(caplog):
    import torch.nn as nn

    from cnnsweep.models import ModelError
    from cnnsweep.models.timm_models import check_input_size

    net = nn.Identity()
    net.pretrained_cfg = {"input_size": (3, 224, 224), "min_input_size": (3, 64, 64)}
    with pytest.raises(ModelError, match="at least 64x64; set data.image_size: 64"):
        check_input_size(net, "x", 32, pretrained=False)
    check_input_size(net, "x", 64, pretrained=False)  # no warning without pretrained weights
    assert "consider data.image_size" not in caplog.text
    check_input_size(nn.Identity(), "y", 32, pretrained=True)  # no pretrained_cfg: nothing to check
    net.pretrained_cfg = {"input_size": (3, 224, 224)}
    with caplog.at_level("WARNING"):
        check_input_size(net, "x", 32, pretrained=True)
    assert "pretrained at 224x224 but sees 32x32" in caplog.text
    net.pretrained_cfg = {"input_size": (3, 224, 224), "fixed_input_size": True}
    with pytest.raises(ModelError, match="need 224x224 inputs; set data.image_size: 224"):
        check_input_size(net, "vit", 32, pretrained=True)


def test_timm_loads_the_weights(tmp_path, monkeypatch):
    """Reading, head reset and input-conv adaptation are timm's (`load_pretrained`), not ours; the
    state dict handed to timm is not kept on the model afterwards (no second copy of the weights)."""
    import timm.models._builder as builder

    calls, real = [], builder.load_pretrained
    monkeypatch.setattr(builder, "load_pretrained", lambda *a, **k: calls.append(k) or real(*a, **k))
    saved = _source_weights()
    save_file(saved, str(tmp_path / "w.safetensors"))
    model = build_model(ModelConfig(name=f"timm/{ARCH}", weights=str(tmp_path / "w.safetensors")), 5, 1, 32)
    assert len(calls) == 1
    assert "state_dict" not in model.pretrained_cfg
    torch.testing.assert_close(model.conv1[0].weight, saved["conv1.0.weight"].sum(1, keepdim=True))


def test_corrupt_weights_file_is_a_model_error(tmp_path):
    (tmp_path / "w.pth").write_bytes(b"not a torch file")
    (tmp_path / "w.safetensors").write_bytes(b"not a safetensors file")
    for name in ("w.pth", "w.safetensors"):
        with pytest.raises(ModelError, match="cannot read"):
            build_model(ModelConfig(name=f"timm/{ARCH}", weights=str(tmp_path / name)), 5, 3, 32)


def test_backbone_tensor_of_another_shape_is_refused(tmp_path):
    """Same keys, but a backbone tensor of another shape: an error, not a partial load."""
    saved = _source_weights()
    saved["conv1.0.weight"] = saved["conv1.0.weight"][:, :, :1, :1].clone()
    save_file(saved, str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelError, match="does not match"):
        build_model(ModelConfig(name=f"timm/{ARCH}", weights=str(tmp_path / "w.safetensors")), 5, 3, 32)


REAL_WEIGHTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "weights" / "tf_efficientnet_lite0.in1k.pth"


@pytest.mark.skipif(not REAL_WEIGHTS.is_file(), reason=f"real ImageNet weights not present at {REAL_WEIGHTS}")
@pytest.mark.parametrize("channels", [3, 1])
def test_real_efficientnet_lite0_weights(channels):
    """The shipped ImageNet file: every backbone tensor equals the file's; the head is re-initialised."""
    saved = torch.load(REAL_WEIGHTS, map_location="cpu", weights_only=True)
    model = build_model(ModelConfig(name="timm/tf_efficientnet_lite0", pretrained=True,
                                    weights=str(REAL_WEIGHTS)), 43, channels, 64)
    own = model.state_dict()
    assert set(own) == set(saved)
    for name, tensor in own.items():
        if name.startswith("classifier."):
            assert tensor.shape[0] == 43, name
        elif name == "conv_stem.weight" and channels == 1:
            torch.testing.assert_close(tensor, saved[name].sum(1, keepdim=True))
        else:
            assert torch.equal(tensor, saved[name]), name
