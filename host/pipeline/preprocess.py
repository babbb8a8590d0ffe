"""Brainwave's image preprocessing, fast: decode, resize the short side, centre-crop, mean subtraction.

Brainwave ran this as a TensorFlow graph (``decode_jpeg`` -> ``resize_images`` bilinear to a short side of
256 -> central 224x224 crop -> subtract the ImageNet channel means). Here it is PIL + NumPy: JPEGs are
decoded in draft mode (the DCT scales the image down while decoding, never below the resize target) and
the resize and the crop are one PIL call (``box=`` resizes only the pixels the crop keeps), so a 224x224
JPEG costs about a millisecond.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

# Float <-> int8 at the featurizer's edges: TFLite's QUANTIZE (round half away from zero, clamp)
# and DEQUANTIZE, as the golden model states them (re-exported for the pipeline and service).
from onda.sim.golden.kernels import dequantize, quantize as quantize_input  # noqa: F401

# ImageNet channel means on 0..255 pixels, in RGB order (Brainwave: R 123.68, G 116.779, B 103.939).
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)

# Formats accepted on the wire; anything else is an unsupported image.
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")

# A decompression-bomb guard: no image larger than this many pixels is decoded.
MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """An image could not be decoded or is not supported; the message says why."""


@dataclass(frozen=True)
class ImagePreprocessing:
    """Parameters of the preprocessing stage (stored in the pipeline manifest).

    ``channel_order`` is the order the featurizer expects: "BGR" for Keras' ResNet50 ("caffe" mode), or "L"
    for one grey channel (the image converted to luminance). ``mean`` is per channel in RGB order (for "L",
    its first value); ``scale`` multiplies after the subtraction.
    """

    resize_short: int = 256
    crop: int = 224
    channel_order: str = "BGR"
    mean: tuple[float, float, float] = IMAGENET_MEAN_RGB
    scale: float = 1.0
    formats: tuple[str, ...] = field(default=FORMATS)

    def to_json(self) -> dict:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["formats"] = list(self.formats)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ImagePreprocessing":
        d = dict(d)
        if "mean" in d:
            d["mean"] = tuple(float(v) for v in d["mean"])
        if "formats" in d:
            d["formats"] = tuple(d["formats"])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown preprocessing parameter(s): {', '.join(sorted(unknown))}")
        if d.get("channel_order", "BGR") not in ("RGB", "BGR", "L"):
            raise ValueError(f"channel_order must be RGB, BGR or L, got {d['channel_order']!r}")
        return cls(**d)

    @property
    def channels(self) -> int:
        return 1 if self.channel_order == "L" else 3

    @property
    def mode(self) -> str:
        """The PIL mode images are decoded to."""
        return "L" if self.channel_order == "L" else "RGB"

    # -- the work ---------------------------------------------------------------------------------------
    def decode(self, data: bytes) -> Image.Image:
        """Encoded bytes -> an RGB (or, for "L", grey) PIL image, at least ``resize_short`` on its short side
        when possible."""
        if not data:
            raise ImageError("empty image (0 bytes)")
        try:
            im = Image.open(io.BytesIO(data))
            if im.format not in self.formats:
                raise ImageError(f"unsupported image format {im.format} (supported: {', '.join(self.formats)})")
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"image of {w}x{h} pixels is over the limit of {MAX_PIXELS:,} pixels")
            if im.format == "JPEG":
                # Let the DCT shrink the image while decoding, never below what the resize needs.
                short = min(w, h)
                factor = max(1, short // self.resize_short)
                if factor > 1:
                    im.draft(self.mode, (max(1, w // factor), max(1, h // factor)))
            im = im.convert(self.mode)
            im.load()
            return im
        except ImageError:
            raise
        except UnidentifiedImageError:
            raise ImageError(f"not a decodable image ({len(data)} bytes; supported: {', '.join(self.formats)})") from None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise ImageError(f"corrupt image: {e}") from None

    def resize_crop(self, im: Image.Image) -> np.ndarray:
        """Resize the short side to ``resize_short`` (bilinear), then the central ``crop`` square: uint8
        [crop, crop, channels] (RGB, or one grey channel)."""
        w, h = im.size
        s = self.resize_short / min(w, h)
        rw, rh = max(self.crop, round(w * s)), max(self.crop, round(h * s))  # the resized size, as TF rounds it
        # The crop window on the integer pixel grid of the resized image, then in source coordinates.
        x0, y0 = (rw - self.crop) // 2, (rh - self.crop) // 2
        sx, sy = w / rw, h / rh
        box = (x0 * sx, y0 * sy, (x0 + self.crop) * sx, (y0 + self.crop) * sy)
        out = np.asarray(im.resize((self.crop, self.crop), Image.BILINEAR, box=box), dtype=np.uint8)
        return out[..., None] if out.ndim == 2 else out

    def normalize(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB [..., 3] (grey [..., 1]) -> float32 in the featurizer's channel order, means subtracted,
        scaled."""
        mean = np.asarray(self.mean[:self.channels], np.float32)
        x = rgb.astype(np.float32) - mean
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        if self.scale != 1.0:
            x = x * np.float32(self.scale)
        return np.ascontiguousarray(x)

    def __call__(self, data: bytes) -> np.ndarray:
        """Encoded image -> float32 [crop, crop, channels], ready to quantize for the featurizer."""
        return self.normalize(self.resize_crop(self.decode(data)))


class QuantizedPreprocessing:
    """``ImagePreprocessing`` followed by quantization, with the per-pixel arithmetic as one table lookup.

    Mean subtraction, scaling and quantization depend only on a pixel's 0..255 value and channel, so they are
    computed once for all 256 x channels cases (with the very same float32 operations, so the result is identical
    to ``quantize_input(pre(data), scale, zero_point)``) and applied as a gather.
    """

    def __init__(self, pre: ImagePreprocessing, scale: float, zero_point: int):
        self.pre = pre
        c = pre.channels
        ramp = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], c, axis=2)  # [256, 1, c]: value v, each channel
        q = quantize_input(pre.normalize(ramp), scale, zero_point)[:, 0, :]  # [256, c] in the output channel order
        self.tables = np.ascontiguousarray(q.T)  # [c, 256]: output channel k, pixel value v
        self.src = [2, 1, 0] if pre.channel_order == "BGR" else list(range(c))  # the input channel each output reads

    def __call__(self, data: bytes) -> np.ndarray:
        """Encoded image -> int8 [crop, crop, channels], ready for the featurizer."""
        rgb = self.pre.resize_crop(self.pre.decode(data))
        out = np.empty(rgb.shape, np.int8)
        for k, c in enumerate(self.src):
            np.take(self.tables[k], rgb[..., c], out=out[..., k])
        return out

