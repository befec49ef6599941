"""Sources, decoding, per-record transforms and bad input."""

import math
import sys

import numpy as np
import pytest

from edgejax.data import sources as S
from edgejax.data import testing as X
from edgejax.data import transforms as T
from edgejax.data import build_source

SHARED = X.shared_data()
needs_shared = pytest.mark.skipif(SHARED is None, reason="../shared/data (real images) is absent")


# ------------------------------------------------------------------------- bundled digits
def test_digits_source_is_real_deterministic_and_split():
    train, info = build_source("digits", "train")
    val, vinfo = build_source("digits", "val")
    assert info["num_classes"] == vinfo["num_classes"] == 10
    assert info["class_names"] == [str(i) for i in range(10)]
    assert info["num_records"] + vinfo["num_records"] == 1797  # sklearn's bundled scans
    assert abs(vinfo["num_records"] / 1797 - 0.2) < 0.01
    img, label = train[0]
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and 0 <= label < 10
    assert img.max() > 200 and img.min() == 0  # real strokes on a dark background
    again, _ = build_source("digits", "train")
    np.testing.assert_array_equal(again[17][0], train[17][0])
    # train and val are disjoint: no val image equals a train image with the same index pattern
    assert {int(val[i][1]) for i in range(len(val))} == set(range(10))


# ------------------------------------------------------------------------- ImageFolder
def test_image_folder_class_order_and_split_detection(tmp_path):
    X.write_good_tree(tmp_path / "train", classes=("zebra", "Apple", "mango"), per_class=2)
    X.write_good_tree(tmp_path / "val", classes=("zebra", "Apple", "mango"), per_class=1)
    (tmp_path / "train" / "mango" / "notes.txt").write_text("not an image")
    src, info = build_source(str(tmp_path), "train")
    assert info["class_names"] == sorted(["zebra", "Apple", "mango"])  # torchvision order
    assert info["num_records"] == 6 and info["kind"] == "image_folder"
    assert src.ignored and src.ignored[0].endswith("notes.txt")
    labels = [src[i][1] for i in range(len(src))]
    assert labels == [0, 0, 1, 1, 2, 2]
    _, vinfo = build_source(str(tmp_path), "val")
    assert vinfo["num_records"] == 3
    import shutil

    shutil.rmtree(tmp_path / "val")
    with pytest.raises(S.DatasetError, match="none for split 'val'"):
        build_source(str(tmp_path), "val")
    X.write_good_tree(tmp_path / "val", classes=("zebra", "Apple", "mango"), per_class=1)
    # a flat class tree serves every split (timm's rule)
    _, flat = build_source(str(tmp_path / "val"), "train")
    assert flat["num_records"] == 3


def test_every_split_numbers_its_classes_as_train_does(tmp_path, caplog):
    """val/ lacking a train class keeps train's indices (cat stays 2, not 1) and says so once;
    a val class train does not have is an error naming it."""
    X.write_good_tree(tmp_path / "train", classes=("airplane", "bird", "cat"), per_class=1)
    X.write_good_tree(tmp_path / "val", classes=("airplane", "cat"), per_class=1)
    with caplog.at_level("WARNING"):
        src, info = build_source(str(tmp_path), "val")
    assert info["class_names"] == ["airplane", "bird", "cat"] and info["num_classes"] == 3
    assert sorted(src[i][1] for i in range(len(src))) == [0, 2]
    assert [r.getMessage() for r in caplog.records if "classes of" in r.getMessage()] == [
        f"{tmp_path / 'val'} has no images of 1 of the 3 classes of {tmp_path / 'train'}: bird"
    ]
    X.write_good_tree(tmp_path / "val", classes=("dog",), per_class=1)
    with pytest.raises(S.DatasetError, match="class folder.s. dog are not among the 3 classes"):
        build_source(str(tmp_path), "val")


def test_missing_and_empty_datasets_fail_clearly(tmp_path):
    with pytest.raises(S.DatasetError, match="does not exist"):
        build_source(str(tmp_path / "nope"), "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(S.DatasetError, match="no class folders"):
        build_source(str(tmp_path / "empty"), "train")
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "a" / "x.txt").write_text("x")
    with pytest.raises(S.DatasetError, match="no images"):
        build_source(str(tmp_path / "noimg"), "train")


def test_tfds_without_the_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(S.DatasetError, match=r"edgejax\[tfds\]"):
        build_source("tfds:imagenet2012", "train")


def test_tfds_not_prepared_says_how_to_build(monkeypatch):
    class FakeTfds:  # the two calls TfdsSource makes, failing as an unprepared dataset does
        class decode:
            @staticmethod
            def SkipDecoding():
                return None

        @staticmethod
        def builder(name, data_dir=None):
            return None

        @staticmethod
        def data_source(name, **kw):
            raise AssertionError(f"Dataset {name}: could not find data in ~/tensorflow_datasets")

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", FakeTfds)
    with pytest.raises(S.DatasetError, match=r"tfds build imagenet2012 .*--manual_dir"):
        build_source("tfds:imagenet2012", "val")


def _tiny_tfds(data_dir):
    """Build a real TFDS dataset (ArrayRecord format) of 15 JPEGs in 3 classes under data_dir.
    Reading needs only tensorflow-datasets (no TensorFlow): images are given encoded."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from PIL import Image
    import io

    class EdgejaxTinyImages(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(None, None, 3)),
                        "label": tfds.features.ClassLabel(names=["cat", "dog", "emu"]),
                    }
                ),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(15), "validation": self._generate_examples(6)}

        def _generate_examples(self, n):
            for i in range(n):
                buf = io.BytesIO()
                Image.fromarray(np.full((40 + i, 30, 3), 10 * i, np.uint8)).save(buf, "JPEG")
                yield i, {"image": buf.getvalue(), "label": i % 3}

    EdgejaxTinyImages(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return "edgejax_tiny_images"


def test_tfds_real_dataset_source_and_loader(tmp_path):
    from edgejax.data import make_train_loader

    name = _tiny_tfds(tmp_path / "tfds")
    src, info = build_source(f"tfds:{name}:{tmp_path / 'tfds'}", "train")
    assert len(src) == 15 and src.class_names == ["cat", "dog", "emu"]
    assert info["num_classes"] == 3 and info["kind"] == "tfds"
    labels = sorted(src[i][1] for i in range(15))
    assert labels == sorted(i % 3 for i in range(15))
    image = T.decode_image(src[0][0])  # bytes left encoded, decoded by edgejax's decoder
    assert image.ndim == 3 and image.shape[2] == 3 and image.shape[1] == 30
    val, _ = build_source(f"tfds:{name}:{tmp_path / 'tfds'}", "val")  # 'val' -> 'validation'
    assert len(val) == 6
    batch = next(iter(make_train_loader(src, global_batch_size=4, image_size=16, seed=0)))
    assert batch["image"].shape == (4, 16, 16, 3) and batch["label"].shape == (4,)
    with pytest.raises(S.DatasetError, match="tfds build"):
        build_source(f"tfds:{name}:{tmp_path / 'elsewhere'}", "train")


# ------------------------------------------------------------------------- decoding bad input
@pytest.mark.parametrize("kind", sorted(X.bad_files(large_side=2000)))
def test_decode_bad_input_is_skipped_or_rgb(kind):
    data, _, decodable = X.bad_files(large_side=10_000)[kind]
    rng = np.random.default_rng(0)
    if decodable:
        img = T.decode_image(data)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        out = T.random_resized_crop(data, rng, 24)
        assert out.shape == (24, 24, 3)
        assert T.center_crop_resize(data, 24, 0.875).shape == (24, 24, 3)
    else:
        with pytest.raises(T.CorruptImageError):
            T.decode_image(data)
        with pytest.raises(T.CorruptImageError):
            T.random_resized_crop(data, rng, 24)


def test_cmyk_and_alpha_convert_to_the_right_colours():
    from PIL import Image

    for kind, seed in (("cmyk", 8), ("png_alpha", 10)):
        data = X.bad_files(large_side=100)[kind][0]
        expected = X._pattern(48, 64, seed=seed).astype(int)
        got = T.decode_image(data).astype(int)
        assert np.abs(got - expected).mean() < 3, kind  # alpha dropped like PIL convert('RGB')
    del Image


def test_very_large_jpeg_uses_dct_scaling():
    data = X.bad_files(large_side=10_000)["very_large"][0]
    small = T.decode_image(data, min_height=8, min_width=1250)
    assert small.shape == (8, 1250, 3)  # 1/8 scale, never below the minimum


# ------------------------------------------------------------------------- crops
def test_sample_crop_follows_timm():
    rng = np.random.default_rng(0)
    areas, ratios = [], []
    for _ in range(2000):
        top, left, h, w = T.sample_crop(300, 400, rng)
        assert 0 <= top and top + h <= 300 and 0 <= left and left + w <= 400
        areas.append(h * w / 120000)
        ratios.append(w / h)
    assert 0.06 < min(areas) and max(areas) <= 1.0
    assert 0.38 < np.mean(areas) < 0.5  # U(0.08, 1), large tries rejected more often
    assert min(ratios) > 0.7 and max(ratios) < 1.4
    # a very wide image with scale (1, 1) never fits: centre crop at the max ratio (timm fallback)
    assert T.sample_crop(10, 100, rng, scale=(1.0, 1.0)) == (0, (100 - 13) // 2, 10, 13)


def test_rrc_dct_scaled_matches_full_decode():
    import cv2

    # smooth content: the test checks crop geometry, not how two resamplers alias fine detail
    img = cv2.resize(X._pattern(60, 80, seed=3), (640, 480), interpolation=cv2.INTER_CUBIC)
    data = X.encode(img, quality=95)
    full = T.decode_image(data)
    for seed in range(5):
        a = T.random_resized_crop(data, np.random.default_rng(seed), 64, scale=(0.5, 1.0))
        b = T.random_resized_crop(full, np.random.default_rng(seed), 64, scale=(0.5, 1.0))
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3


def test_eval_geometry_is_timm_floor_then_centre():
    # timm: scale_size = floor(224 / 0.875) = 256; Resize(256) keeps the aspect ratio.
    assert T.eval_resize_size(375, 500, 224, 0.875) == (256, 341)
    assert T.eval_resize_size(500, 375, 224, 0.95) == (
        313,
        235,
    )  # floor(224 / .95) = 235; int(235 * 500 / 375)
    assert math.floor(224 / 0.95) == 235
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 100:] = 255  # right half white
    out = T.center_crop_resize(img, 50, crop_pct=1.0)
    assert out.shape == (50, 50, 3)
    assert out[:, :24].max() == 0 and out[:, 26:].min() == 255  # centred on the boundary


@needs_shared
def test_real_imagenet_sample_decodes_and_crops():
    files = sorted((SHARED / "imagenet-samples").glob("*/*.JPEG"))[:5]
    for f in files:
        data = f.read_bytes()
        out = T.random_resized_crop(data, np.random.default_rng(1), 224)
        ev = T.center_crop_resize(data, 224, 0.875, "bicubic")
        assert out.shape == ev.shape == (224, 224, 3)
        assert ev.std() > 5
