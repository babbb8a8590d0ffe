"""TensorFlow Serving's REST request and response bodies for ``:predict``, read into what the server scores.

Request (a JSON object), either format of TensorFlow Serving's:
  row       ``{"instances": [IMAGE, ...]}`` or ``{"instances": [{"images": IMAGE}, ...]}``
  columnar  ``{"inputs": [IMAGE, ...]}`` or ``{"inputs": {"images": [IMAGE, ...]}}``
where an IMAGE is ``{"b64": "<base64 of the encoded image>"}`` (standard or URL-safe alphabet, padding
optional) or a preprocessed ``[H][W][3]`` array of numbers; a batch holds one kind only. ``signature_name``
is accepted and ignored (a pipeline has one signature), as it is over gRPC.

Response: ``{"predictions": [...]}`` to the row format and ``{"outputs": [...]}`` to the columnar one, a list
with one entry per image (the scores, or the ``[1][1][F]`` features of a featurizer-only pipeline), as TensorFlow
Serving answers a model with one output. Every reading error is an ``InputError`` (INVALID_ARGUMENT, HTTP 400)
that says what is wrong and where.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

import numpy as np

from .model import InputError

INPUT_NAME = "images"
NON_NUMBERS = {"U": "strings", "b": "booleans", "O": "mixed values (null, objects or nested lists of other sizes)"}


@dataclass
class PredictBody:
    kind: str  # "string" (encoded images) or "float" (preprocessed [n,H,W,3])
    payload: object  # list[bytes] or np.ndarray
    n: int
    columnar: bool  # answer {"outputs": ...} rather than {"predictions": ...}


def _is_b64(v) -> bool:
    return isinstance(v, dict) and set(v) == {"b64"}


def decode_b64(value, where: str) -> bytes:
    if not isinstance(value, str):
        raise InputError(f"{where}: 'b64' must be a string, got {type(value).__name__}")
    text = "".join(value.split()).replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InputError(f"{where}: bad base64 ({e})") from None


def _named(value, where: str):
    """The 'images' entry of a {name: value} object (TensorFlow Serving's named inputs)."""
    if INPUT_NAME not in value:
        got = ", ".join(repr(k) for k in value) or "none"
        raise InputError(f"{where}: missing input {INPUT_NAME!r} (inputs given: {got})")
    return value[INPUT_NAME]


def parse_predict(body: bytes, image_shape: tuple[int, ...]) -> PredictBody:
    """Read a ``:predict`` body; ``image_shape`` is the featurizer's [H, W, 3] (for preprocessed arrays)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"malformed JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InputError(f"the body must be a JSON object with 'instances' or 'inputs', got {type(doc).__name__}")
    if "instances" in doc and "inputs" in doc:
        raise InputError("give 'instances' (row format) or 'inputs' (columnar format), not both")
    if "instances" in doc:
        where, columnar, batch = "instances", False, doc["instances"]
        if isinstance(batch, list) and batch and all(isinstance(v, dict) and not _is_b64(v) for v in batch):
            batch = [_named(v, f"instances[{i}]") for i, v in enumerate(batch)]
    elif "inputs" in doc:
        where, columnar, batch = "inputs", True, doc["inputs"]
        if isinstance(batch, dict) and not _is_b64(batch):
            batch = _named(batch, "inputs")
            where = f"inputs[{INPUT_NAME!r}]"
    else:
        raise InputError(f"missing 'instances' or 'inputs' (keys given: {', '.join(map(repr, doc)) or 'none'})")
    if not isinstance(batch, list):
        raise InputError(f"{where} must be a list with one entry per image, got {type(batch).__name__}")
    if not batch:
        raise InputError(f"{where}: empty batch (no images)")
    encoded = [_is_b64(v) for v in batch]
    if all(encoded):
        images = [decode_b64(v["b64"], f"{where}[{i}]") for i, v in enumerate(batch)]
        return PredictBody("string", images, len(images), columnar)
    if any(encoded):
        raise InputError(f"{where}: a batch holds either encoded images ({{\"b64\": ...}}) or arrays, not both")
    for i, v in enumerate(batch):
        if not isinstance(v, list):
            raise InputError(f"{where}[{i}]: an image is {{\"b64\": \"<base64>\"}} or a "
                             f"[{']['.join(map(str, image_shape))}] array of numbers, got {type(v).__name__}")
    try:
        x = np.asarray(batch)
    except ValueError:
        raise InputError(f"{where}: the arrays are ragged (not all of one shape "
                         f"[{','.join(map(str, image_shape))}])") from None
    if x.dtype.kind not in "fiu":
        got = NON_NUMBERS.get(x.dtype.kind, f"{x.dtype} values")
        raise InputError(f"{where}: arrays must hold numbers only, got {got}")
    if list(x.shape[1:]) != list(image_shape):
        raise InputError(f"{where}: arrays must have shape [N,{','.join(map(str, image_shape))}], "
                         f"got {list(x.shape)}")
    return PredictBody("float", x.astype(np.float32), x.shape[0], columnar)


def predict_answer(scores: np.ndarray, columnar: bool) -> bytes:
    return json.dumps({"outputs" if columnar else "predictions": scores.tolist()}).encode()
