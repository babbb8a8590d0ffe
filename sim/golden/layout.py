"""The space-to-depth layout of a stride-2 stem convolution, written once.

A tensor stored in space-to-depth has each 2x2 block of pixels as one pixel of four times the
channels, in the order ``(dy*2 + dx)*C + ch`` (VEC SPACE_TO_DEPTH of ``hw/ISA.md``). A stride-2
VALID convolution over an NHWC input equals a stride-1 VALID convolution over the input's
space-to-depth with the kernel ``space_to_depth_kernel`` gives (first output rows and columns; the
input padded to even height and width first, the padding meeting only zero weights).

The compiler lays out the stem's input and weights with these, the emulator executes VEC
SPACE_TO_DEPTH with ``space_to_depth``, and the runtime reads a tensor stored so back with
``depth_to_space``.
"""

from __future__ import annotations

import numpy as np


def space_to_depth(x: np.ndarray) -> np.ndarray:
    """NHWC ``[N, 2H, 2W, C]`` -> ``[N, H, W, 4C]``: ``y[b, r, c, (dy*2 + dx)*C + ch] =
    x[b, 2r + dy, 2c + dx, ch]``. Height and width must be even."""
    n, h, w, c = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"space_to_depth: height and width must be even, got {h} x {w}")
    return x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h // 2, w // 2, 4 * c)


def depth_to_space(y: np.ndarray) -> np.ndarray:
    """``space_to_depth``'s inverse: ``[N, H, W, 4C]`` -> NHWC ``[N, 2H, 2W, C]``."""
    n, h, w, c4 = y.shape
    if c4 % 4:
        raise ValueError(f"depth_to_space: channels must be a multiple of 4, got {c4}")
    c = c4 // 4
    return y.reshape(n, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, c)


def space_to_depth_kernel(w: np.ndarray) -> np.ndarray:
    """The weights of a stride-2 convolution, OHWI ``[O, KH, KW, C]``, as the stride-1 kernel over
    the input's space-to-depth: ``[O, ceil(KH/2), ceil(KW/2), 4C]`` with ``w'[o, i, k, (dy*2 +
    dx)*C + ch] = w[o, 2i + dy, 2k + dx, ch]``, zero where ``2i + dy >= KH`` or ``2k + dx >= KW``."""
    o, kh, kw, c = w.shape
    kh2, kw2 = -(-kh // 2), -(-kw // 2)
    padded = np.zeros((o, 2 * kh2, 2 * kw2, c), dtype=w.dtype)
    padded[:, :kh, :kw, :] = w
    return space_to_depth(padded)
