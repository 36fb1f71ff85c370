"""Reading, hashing and decoding image files into float32 RGB arrays.

Decoding uses Pillow rather than ``tf.io.decode_image``: TensorFlow's decoders
ignore EXIF orientation, reject CMYK JPEGs and 16-bit palettes, and trust the
file extension less gracefully. Pillow identifies the format from the content,
so a PNG named ``.jpg`` decodes as a PNG.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass

import numpy as np

from embedclf.exceptions import ImageDecodeError

__all__ = [
    "IMAGE_EXTENSIONS",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "content_key",
    "read_image_bytes",
    "decode_image",
    "load_image",
    "preprocessing_tag",
    "RESAMPLE_FILTERS",
    "DEFAULT_CROP_FRACTION",
]

#: File extensions treated as images when scanning folders (content decides
#: the real format when decoding).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}
)

#: Pillow's own decompression-bomb limit (about 89.5 megapixels).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485

#: Version tag of the decoding rules below with the default resize (bilinear,
#: whole image); part of every cache fingerprint, so changing the rules can
#: never reuse stale vectors. Other filters and crops get their own tag from
#: :func:`preprocessing_tag`.
PREPROCESSING = "pillow-rgb-exif-whitebg-bilinear-float01-v1"

#: Pillow's convolution resize filters that ``resample`` accepts (all of them
#: antialias when downscaling; ``_tf_images.py`` reproduces each bit for bit).
RESAMPLE_FILTERS = ("bilinear", "bicubic", "lanczos", "hamming", "box")

#: ImageEmbedder's default centre crop: Inception's and EfficientNet's
#: evaluation crop (224 of 256 pixels). On the grocery validation split it
#: gives 74.0 % against 68.2 % for the whole image (EfficientNet-Lite0, plain
#: logistic regression); the low-level functions here default to no crop.
DEFAULT_CROP_FRACTION = 0.875

_JPEG_DRAFT_FACTOR = 2  # keep at least 2x the target size when DCT-downscaling
_PIL_FILTERS = {"bilinear": 2, "bicubic": 3, "lanczos": 1, "hamming": 5, "box": 4}


def preprocessing_tag(resample: str = "bilinear", crop_fraction: float = 1.0) -> str:
    """The cache-fingerprint tag of a resize filter and centre-crop fraction.

    The defaults give :data:`PREPROCESSING` unchanged, so caches written
    before these options existed stay valid.
    """
    _check_preprocessing(resample, crop_fraction)
    tag = PREPROCESSING.replace("-bilinear-", f"-{resample}-")
    if crop_fraction != 1.0:
        tag += f"-crop{float(crop_fraction):g}"
    return tag


def _check_preprocessing(resample, crop_fraction) -> None:
    if resample not in RESAMPLE_FILTERS:
        raise ValueError(
            f"resample must be one of {list(RESAMPLE_FILTERS)}; got {resample!r}."
        )
    if not 0.0 < float(crop_fraction) <= 1.0:
        raise ValueError(
            "crop_fraction is the centred fraction of each side kept before "
            f"resizing and must be in (0, 1]; got {crop_fraction!r}."
        )


def crop_box(width: int, height: int, crop_fraction: float):
    """The centred ``(left, top, right, bottom)`` box (floats) kept by a crop."""
    f = float(crop_fraction)
    return (
        width * (1.0 - f) / 2.0,
        height * (1.0 - f) / 2.0,
        width * (1.0 + f) / 2.0,
        height * (1.0 + f) / 2.0,
    )


def content_key(data: bytes) -> str:
    """The cache key of an image: SHA-256 of its bytes, as 64 hex characters."""
    return hashlib.sha256(data).hexdigest()


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """Read a whole image file, with errors that name the file and the fix.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        With a message naming ``path``.
    ImageDecodeError
        If the file is empty, is not a regular file (a pipe, socket or device:
        refused without reading, so ``/dev/zero`` or a FIFO cannot hang or
        exhaust memory), or cannot be read for another reason (a symlink
        loop, an I/O error).
    """
    path = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO must not block; it is refused below.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        with open(os.open(path, flags), "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(path)
            if not stat.S_ISREG(mode):
                raise ImageDecodeError(
                    path,
                    "it is not a regular file (a pipe, socket or device). Pass "
                    "image files only.",
                )
            data = fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Image file {path!r} does not exist. Check the path, or remove it "
            "from the input list."
        ) from None
    except IsADirectoryError:
        raise IsADirectoryError(
            f"Image path {path!r} is a directory, not an image file. Pass the "
            "files inside it (embedclf.load_image_folder lists a folder of class "
            "subfolders)."
        ) from None
    except PermissionError:
        raise PermissionError(
            f"Image file {path!r} cannot be read: permission denied. Fix its "
            "permissions (e.g. chmod a+r) or remove it from the input list."
        ) from None
    except OSError as exc:  # ELOOP, ENOTDIR, EIO, ENAMETOOLONG, ...
        raise ImageDecodeError(
            path,
            f"the file cannot be read ({exc.strerror or exc}). Check the path, "
            "or remove it from the input list.",
        ) from None
    if not data:
        raise ImageDecodeError(path, "the file is empty (0 bytes).")
    return data


_SIGNATURES = [
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
]


def _sniff_format(data: bytes) -> str | None:
    """The format a file's magic bytes claim, for error messages only."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    return None


@dataclass(frozen=True)
class _Target:
    height: int
    width: int


def _to_rgb(img, path):
    """Convert any Pillow mode to 8-bit RGB.

    Transparent pixels are composited on white; 16-bit and 32-bit integer
    images are scaled down from their full range rather than clipped.
    """
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 1.0 if mode == "F" else 65535.0
        arr = np.clip(arr / scale, 0.0, 1.0) * 255.0
        img = Image.fromarray(np.round(arr).astype(np.uint8), "L")
        mode = "L"
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return img.convert("RGB")
    return img


def decode_image(
    data: bytes,
    image_size: tuple[int, int],
    *,
    path: str = "<bytes>",
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    as_uint8: bool = False,
    resample: str = "bilinear",
    crop_fraction: float = 1.0,
) -> np.ndarray:
    """Decode encoded image bytes to a float32 array in [0, 1].

    Parameters
    ----------
    data : bytes
        The encoded file content (JPEG, PNG, GIF, BMP, WebP, TIFF, ...).
    image_size : tuple of (height, width)
        Output size; the image is resized with Pillow's ``resample`` filter
        (antialiased, as Pillow always does when downscaling).
    path : str
        Used in error messages only.
    max_image_pixels : int or None
        Refuse images with more pixels than this after JPEG draft decoding
        (a decompression-bomb guard). None disables the check.
    as_uint8 : bool
        Return the 8-bit pixels (0..255) instead of float32 in [0, 1]: 4x less
        memory to batch and copy; ``Backbone`` scales them in TensorFlow to
        exactly the same float32 values.
    resample : {"bilinear", "bicubic", "lanczos", "hamming", "box"}
        Pillow's resize filter.
    crop_fraction : float in (0, 1]
        Keep the centred ``crop_fraction`` of the width and of the height
        (after EXIF orientation), then resize it: Pillow's ``resize(box=...)``
        with a float box, so no pixel rounding happens in the crop.

    Returns
    -------
    ndarray of shape (height, width, 3), dtype float32 (uint8 if ``as_uint8``)

    Raises
    ------
    ImageDecodeError
        Unknown format, truncated or corrupt data, or an oversized image.
    """
    from PIL import Image, UnidentifiedImageError

    _check_preprocessing(resample, crop_fraction)
    target = _Target(int(image_size[0]), int(image_size[1]))
    try:
        arr = _pixels(data, target, path, max_image_pixels, resample, crop_fraction)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise _unidentified(data, path) from None
    except Image.DecompressionBombError as exc:
        raise _over_pillow_limit(exc, path) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise ImageDecodeError(
            path,
            f"the image data is truncated or corrupt ({type(exc).__name__}: "
            f"{exc}). Re-export or remove the file.",
        ) from None
    if as_uint8:
        return arr
    return arr.astype(np.float32) / np.float32(255.0)


def _pixels(data, target, path, max_image_pixels, resample, crop_fraction):
    """:func:`decode_image`'s uint8 RGB array; Pillow's errors propagate."""
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        # Pillow's bomb check runs on the declared size before JPEG draft
        # decoding shrinks it; we apply our own limit after the draft.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(data))
        if img.format == "JPEG":
            side = _JPEG_DRAFT_FACTOR * max(target.height, target.width)
            img.draft(img.mode, (side, side))
        width, height = img.size
        if max_image_pixels is not None and width * height > max_image_pixels:
            raise ImageDecodeError(
                path,
                f"the image is {width}x{height} pixels, more than "
                f"max_image_pixels={max_image_pixels} (it could be a "
                "decompression bomb). Pass a larger max_image_pixels if you "
                "trust this file.",
            )
        img.load()
        # In place: without an orientation tag this is a no-op rather
        # than a full copy of the decoded image (~0.3 ms per photo).
        ImageOps.exif_transpose(img, in_place=True)
        img = _to_rgb(img, path)
        size = (target.width, target.height)
        if crop_fraction != 1.0:
            box = crop_box(*img.size, crop_fraction)
            img = img.resize(size, _PIL_FILTERS[resample], box=box)
        elif img.size != size:
            img = img.resize(size, _PIL_FILTERS[resample])
        return np.asarray(img, dtype=np.uint8)


def _unidentified(data, path) -> ImageDecodeError:
    """The error for bytes Pillow cannot identify as an image."""
    head = data[:12]
    kind = _sniff_format(data)
    if kind is not None:  # a known signature, but Pillow cannot parse it
        return ImageDecodeError(
            path,
            f"the content starts like a {kind} file but is truncated or "
            "corrupt. Re-export or remove the file.",
        )
    return ImageDecodeError(
        path,
        f"the content is not a recognised image format (it starts with "
        f"{head!r}). Remove the file or re-save it as JPEG or PNG.",
    )


def _over_pillow_limit(exc, path) -> ImageDecodeError:
    """The error when Pillow's own decompression-bomb guard fired.

    Pillow checks 2 * ``PIL.Image.MAX_IMAGE_PIXELS`` when the file is
    opened, so a larger ``max_image_pixels`` alone cannot help.
    """
    from PIL import Image

    return ImageDecodeError(
        path,
        f"{exc} This is Pillow's own limit (2 * PIL.Image.MAX_IMAGE_PIXELS, "
        f"PIL.Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS}); if you trust "
        "this file, raise PIL.Image.MAX_IMAGE_PIXELS (or set it to None) "
        "as well as max_image_pixels.",
    )


def load_image(
    path: str | os.PathLike,
    image_size: tuple[int, int],
    *,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    as_uint8: bool = False,
    resample: str = "bilinear",
    crop_fraction: float = 1.0,
) -> tuple[str, np.ndarray]:
    """Read, hash and decode one file.

    Returns the content key of exactly the bytes that were decoded, so a file
    edited between hashing and decoding can never store a vector under the
    old content's key.
    """
    data = read_image_bytes(path)
    key = content_key(data)
    arr = decode_image(
        data,
        image_size,
        path=os.fspath(path),
        max_image_pixels=max_image_pixels,
        as_uint8=as_uint8,
        resample=resample,
        crop_fraction=crop_fraction,
    )
    return key, arr
