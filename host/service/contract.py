"""The wire contract, compiled from the repository's ``protos/`` at run time: the messages and method onda serves.

``protos/`` holds the ``.proto`` files a user of any language compiles (TensorFlow Serving's
``tensorflow.serving.PredictionService/Predict`` with the same names and field numbers, and gRPC health).
onda's Python code uses them too: ``grpc_tools.protoc`` compiles them once per process into a descriptor
set (protoc runs as a child process), and the message classes are built from it in a *private* descriptor pool.

Why a private pool and not generated ``*_pb2.py`` modules: the contract keeps TensorFlow's full names
(``tensorflow.TensorProto``, ``tensorflow.serving.PredictRequest``), and TensorFlow registers those same names in
protobuf's default pool whenever it is imported (a TensorFlow preprocessing stage, the tests' oracle). Two
registrations of one full name in the default pool fail; in separate pools they coexist, and on the wire only
the bytes and the method path count. So nothing in onda needs ``tensorflow-serving-api`` at run time; the
tests keep it as the independent oracle the contract is checked against.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

PROTOS = Path(__file__).resolve().parents[2] / "protos"
FILES = ("tensorflow_serving/apis/prediction_service.proto", "grpc/health/v1/health.proto")
SERVICE = "tensorflow.serving.PredictionService"
PREDICT = "Predict"


class ContractError(RuntimeError):
    """protos/ is missing or does not compile."""


@dataclass(frozen=True)
class Contract:
    pool: object  # google.protobuf.descriptor_pool.DescriptorPool holding protos/ and its imports
    PredictRequest: type
    PredictResponse: type
    TensorProto: type
    ModelSpec: type
    data_types: dict[str, int]  # DataType name -> number
    predict_path: str  # "/tensorflow.serving.PredictionService/Predict"

    def dtype_name(self, number: int) -> str:
        return next((k for k, v in self.data_types.items() if v == number), str(number))


def protoc(args: list[str], protos: Path = PROTOS) -> None:
    """Run grpcio-tools' protoc on protos/ (with protobuf's well-known types on the path) in a child process:
    protoc linked into a process that has already loaded TensorFlow's own protobuf library crashes."""
    import importlib.resources
    import subprocess
    import sys

    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    r = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{protos}", f"-I{well_known}", *args],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise ContractError(f"protoc failed on {protos}: {r.stderr.strip() or r.returncode}")


def compile_descriptor_set(protos: Path = PROTOS, files: tuple[str, ...] = FILES) -> bytes:
    """A serialized FileDescriptorSet of ``files`` (relative to ``protos``) and everything they import."""
    if not (protos / files[0]).is_file():
        raise ContractError(f"the wire contract is missing: no {protos / files[0]}")
    with tempfile.TemporaryDirectory(prefix="onda-protos-") as d:
        out = Path(d) / "contract.pb"
        protoc([f"--descriptor_set_out={out}", "--include_imports", *files], protos)
        return out.read_bytes()


def pool_from_descriptor_set(data: bytes):
    from google.protobuf import descriptor_pb2, descriptor_pool

    files = descriptor_pb2.FileDescriptorSet.FromString(data)
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:  # --include_imports lists dependencies before their dependents
        pool.Add(f)
    return pool


@functools.cache
def contract() -> Contract:
    """The contract of this process (compiled on first use, in a fraction of a second)."""
    from google.protobuf import message_factory

    pool = pool_from_descriptor_set(compile_descriptor_set())

    def cls(name):
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))

    method = pool.FindServiceByName(SERVICE).methods_by_name[PREDICT]
    data_types = {v.name: v.number for v in pool.FindEnumTypeByName("tensorflow.DataType").values}
    return Contract(pool, cls("tensorflow.serving.PredictRequest"), cls("tensorflow.serving.PredictResponse"),
                    cls("tensorflow.TensorProto"), cls("tensorflow.serving.ModelSpec"), data_types,
                    f"/{method.containing_service.full_name}/{method.name}")


def serialize(message) -> bytes:
    """Serializer for gRPC that takes any class of the same message (onda's or TensorFlow Serving's)."""
    return message.SerializeToString()
