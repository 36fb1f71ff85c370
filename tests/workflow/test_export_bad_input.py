"""The exported SavedModel names the element of a batch that is not an image."""

from __future__ import annotations

import io
import re

import pytest
from _cli_helpers import trained
from PIL import Image

from embedclf.cli import list_images, main

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir):
    import tensorflow as tf

    session = trained(tmp_path_factory, tiny_model_dir)
    out = tmp_path_factory.mktemp("export_bad") / "exported"
    assert main(["export", str(session["output"]), "--savedmodel", str(out)]) == 0
    paths = list_images([str(session["data"] / "test")])[:3]
    good = [open(p, "rb").read() for p in paths]
    return tf.saved_model.load(str(out)).signatures["serving_default"], good


def _webp():
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (200, 30, 30)).save(buf, "WEBP")
    return buf.getvalue()


@pytest.mark.parametrize("bad", [b"", b"not an image at all", b"II*\x00tiff"])
def test_bad_element_is_named(exported, bad):
    import tensorflow as tf

    serve, good = exported
    batch = tf.constant([good[0], good[1], bad, good[2]])
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        serve(image_bytes=batch)
    text = " ".join(str(info.value).split())
    assert re.search(
        r"image_bytes\[2\] is not a JPEG, PNG, GIF, BMP or WebP file", text
    ), text


def test_good_batches_and_webp_still_pass(exported):
    import tensorflow as tf

    serve, good = exported
    out = serve(image_bytes=tf.constant([*good, _webp()]))
    assert out["label"].shape == (4,)


def test_one_file_as_a_scalar_string_is_a_batch_of_one(exported):
    import tensorflow as tf

    serve, good = exported
    one = serve(image_bytes=tf.constant(good[0]))
    batch = serve(image_bytes=tf.constant(good[:1]))
    assert one["probabilities"].shape == batch["probabilities"].shape
    assert one["label"].numpy().tolist() == batch["label"].numpy().tolist()


def test_a_matrix_of_files_says_what_to_pass(exported):
    import tensorflow as tf

    serve, good = exported
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        serve(image_bytes=tf.constant([good[:2]]))
    assert "image_bytes must be the encoded bytes of image files, as a 1-D" in str(
        info.value
    )
