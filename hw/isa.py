"""The onda engine's instruction set: one definition shared by the compiler, the ISA emulator and
the RTL decoder.

Every instruction is one 256-bit little-endian word (32 bytes). Bits [0, 4) hold the opcode, bits
[4, 8) the four dependency-token flags (VTA's scheme), the rest the opcode's fields, packed from
bit 8 upwards in the order ``LAYOUTS`` lists them. ``hw/ISA.md`` documents the semantics; this
module is the field-exact statement.

Three modules execute the program, each in order, decoupled by token queues (as in VTA):

* load    -- ``LOAD`` (DMA: memory port -> activation / weight / parameter buffer)
* compute -- ``GEMM``, ``VEC``, ``FINISH``
* store   -- ``STORE`` (DMA: output / activation buffer -> memory port)

``NOP`` names its module in a field. For module X, *prev* is the module before it in
load -> compute -> store and *next* the one after. ``pop_prev`` waits for and takes a token the
previous module pushed, ``push_next`` gives the next module one, and so on; the queues are
LOAD->COMPUTE (l2c), COMPUTE->LOAD (c2l), COMPUTE->STORE (c2s) and STORE->COMPUTE (s2c).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

INSTRUCTION_BYTES = 32
INSTRUCTION_BITS = INSTRUCTION_BYTES * 8


class Opcode(enum.IntEnum, shape=4):
    NOP = 0
    LOAD = 1
    STORE = 2
    GEMM = 3
    VEC = 4
    FINISH = 5


class Module(enum.IntEnum, shape=2):
    LOAD = 0
    COMPUTE = 1
    STORE = 2


class Buffer(enum.IntEnum, shape=2):
    """On-chip buffers a DMA instruction addresses (byte addresses within each)."""

    ACT = 0  # input activations (int8), read by GEMM and VEC
    WGT = 1  # weights (int8), lane-interleaved [ceil(out_channels / lanes), K', lanes] (pack_weights)
    PARAM = 2  # int32 words: per-channel (bias, multiplier, shift) or a vector op's record
    OUT = 3  # output activations (int8), written by GEMM and VEC, read by STORE


class VecFunc(enum.IntEnum, shape=4):
    """Functions of the vector unit (``VEC``)."""

    COPY = 0  # dst = src (a PAD's interior; padding comes from the LOAD's fill)
    ADD = 1  # residual add with rescale: TFLite's int8 ADD
    MAX_POOL = 2
    AVG_POOL = 3
    MEAN = 4  # global mean over H, W: int32 sum, count folded into the multiplier (QuantizedMeanOrSum)
    REQUANT = 5  # int8 -> int8 rescale (QUANTIZE)
    SPACE_TO_DEPTH = 6  # dst[r, c, (dy*2 + dx)*C + ch] = src[2r + dy, 2c + dx, ch] (a PAD feeding a stride-2 stem)
    MUL = 7  # product with rescale: TFLite's int8 MUL (a batch norm's per-channel scale)


class Epilogue(enum.IntEnum, shape=2):
    """The GEMM's requantizer: how (bias + accumulator) becomes int8."""

    FIXED = 0  # CONV_2D: out_zp + MultiplyByQuantizedMultiplier(acc, M0, shift); words (bias, M0, shift)
    DOUBLE = 1  # FULLY_CONNECTED: out_zp + round(double(acc) * scale); words (bias, scale lo32, scale hi32)


# Records in the parameter buffer: int32 words (little-endian), in this order.
PARAM_RECORDS: dict[str, tuple[str, ...]] = {
    # GEMM, per output channel: the bias (zero-point correction folded in), then the Epilogue's two words.
    "gemm_fixed": ("bias", "multiplier", "shift"),
    "gemm_double": ("bias", "scale_lo", "scale_hi"),  # the IEEE double's low and high 32 bits
    "add": ("zp1", "zp2", "m1", "s1", "m2", "s2", "m_out", "s_out", "out_zp"),  # VEC ADD
    "rescale": ("in_zp", "multiplier", "shift", "out_zp"),  # VEC MEAN and REQUANT
    "mul": ("zp1", "zp2", "multiplier", "shift", "out_zp"),  # VEC MUL
}
GEMM_PARAM_WORDS = len(PARAM_RECORDS["gemm_fixed"])
ADD_PARAM_WORDS = len(PARAM_RECORDS["add"])
RESCALE_PARAM_WORDS = len(PARAM_RECORDS["rescale"])
MUL_PARAM_WORDS = len(PARAM_RECORDS["mul"])

# The token flags every instruction carries, after the opcode.
TOKEN_FIELDS = ("pop_prev", "pop_next", "push_prev", "push_next")

# The four dependency-token queues, and which queue each flag of each module uses (None: the
# module has no neighbour there, and using the flag is an error).
QUEUES = ("l2c", "c2l", "c2s", "s2c")
TOKEN_QUEUES: dict[Module, tuple[str | None, str | None, str | None, str | None]] = {
    Module.LOAD: (None, "c2l", None, "l2c"),
    Module.COMPUTE: ("l2c", "s2c", "c2l", "c2s"),
    Module.STORE: ("c2s", None, "s2c", None),
}

# name -> [(field, bits, signed)], packed from bit 8 upwards.
LAYOUTS: dict[Opcode, list[tuple[str, int, bool]]] = {
    Opcode.NOP: [("module", 2, False)],
    Opcode.LOAD: [
        ("buffer", 2, False),  # Buffer
        ("sram_addr", 24, False),  # byte address in the buffer
        ("dram_addr", 32, False),  # byte address on the memory port
        ("y_size", 16, False),  # rows transferred
        ("x_size", 24, False),  # bytes per row
        ("dram_stride", 24, False),  # bytes between rows in memory
        ("pad_top", 8, False),  # fill rows before, in rows of (pad_left + x_size + pad_right) bytes
        ("pad_bottom", 8, False),
        ("pad_left", 16, False),  # fill bytes before each row
        ("pad_right", 16, False),
        ("pad_value", 8, True),
    ],
    Opcode.STORE: [
        ("buffer", 2, False),
        ("sram_addr", 24, False),
        ("dram_addr", 32, False),
        ("y_size", 16, False),
        ("x_size", 24, False),
        ("dram_stride", 24, False),
    ],
    Opcode.GEMM: [
        ("act_addr", 24, False),  # ACT: input band [in_rows, in_cols, channels] (padding included)
        ("wgt_addr", 24, False),  # WGT: [ceil(out_channels / lanes), K', lanes] (pack_weights), a multiple of lanes * width
        ("param_addr", 20, False),  # PARAM: out_channels x (bias, multiplier, shift)
        ("out_addr", 24, False),  # OUT: [out_rows, out_cols, out_channels]
        ("in_rows", 12, False),
        ("in_cols", 12, False),
        ("channels", 16, False),
        ("out_rows", 12, False),
        ("out_cols", 12, False),
        ("out_channels", 16, False),
        ("kh", 4, False),
        ("kw", 4, False),
        ("stride_h", 4, False),
        ("stride_w", 4, False),
        ("dilation_h", 4, False),
        ("dilation_w", 4, False),
        ("out_zp", 8, True),
        ("act_min", 8, True),
        ("act_max", 8, True),
        ("epilogue", 2, False),  # Epilogue: how the accumulator is scaled to int8
        ("acc_addr", 20, False),  # ACC: [groups, out_rows * out_cols, lanes] int32 partial sums, a multiple of lanes * 4
        ("acc_in", 1, False),  # start each sum from ACC instead of the bias (a later pass over K)
        ("acc_out", 1, False),  # write the int32 sums to ACC instead of the epilogue's int8 to OUT
    ],
    Opcode.VEC: [
        ("func", 4, False),  # VecFunc
        ("src_addr", 24, False),  # ACT: [in_rows, in_cols, channels]
        ("src2_addr", 24, False),  # ACT: second operand of ADD (same shape)
        ("dst_addr", 24, False),  # OUT: [out_rows, out_cols, channels]
        ("param_addr", 20, False),  # PARAM: the function's record
        ("in_rows", 12, False),
        ("in_cols", 12, False),
        ("channels", 16, False),
        ("out_rows", 12, False),
        ("out_cols", 12, False),
        ("kh", 8, False),  # pool window
        ("kw", 8, False),
        ("stride_h", 4, False),
        ("stride_w", 4, False),
        ("pad_top", 4, False),  # pool taps before the band (excluded from max and average)
        ("pad_left", 4, False),
        ("act_min", 8, True),
        ("act_max", 8, True),
    ],
    Opcode.FINISH: [],
}

MODULE_OF = {Opcode.LOAD: Module.LOAD, Opcode.STORE: Module.STORE, Opcode.GEMM: Module.COMPUTE,
             Opcode.VEC: Module.COMPUTE, Opcode.FINISH: Module.COMPUTE}


# Fields whose values are one of the enums above: the RTL sees them with the enum's shape.
ENUM_FIELDS = {"module": Module, "buffer": Buffer, "func": VecFunc, "epilogue": Epilogue}

HEADER_BITS = 8


def field_layout(opcode: Opcode) -> data.StructLayout:
    """The opcode's fields as an Amaranth layout, bit for bit as ``LAYOUTS`` packs them above the
    8-bit header: what the RTL decoder views an instruction's body through."""
    fields = {}
    for name, bits, is_signed in LAYOUTS[opcode]:
        fields[name] = ENUM_FIELDS.get(name) or (signed(bits) if is_signed else unsigned(bits))
    return data.StructLayout(fields)


def field_bits(opcode: Opcode) -> int:
    """Bits the opcode's fields occupy above the header; every higher bit is reserved (zero)."""
    return sum(bits for _, bits, _ in LAYOUTS[opcode])


HeaderLayout = data.StructLayout({"opcode": Opcode, **{t: 1 for t in TOKEN_FIELDS}})
# A whole 256-bit instruction: the header, then the body seen as any opcode's fields.
InstructionLayout = data.StructLayout({
    "header": HeaderLayout,
    "body": data.UnionLayout({op.name.lower(): field_layout(op) for op in Opcode if LAYOUTS[op]}
                             | {"raw": unsigned(INSTRUCTION_BITS - HEADER_BITS)}),
})


def record_layout(name: str) -> data.StructLayout:
    """A parameter-buffer record (``PARAM_RECORDS``) as int32 words, in order."""
    return data.StructLayout({w: signed(32) for w in PARAM_RECORDS[name]})


class ISAError(ValueError):
    """An instruction that cannot be encoded or decoded; the message names the field."""


def _check_layouts() -> None:
    for op, layout in LAYOUTS.items():
        total = HEADER_BITS + sum(bits for _, bits, _ in layout)
        if total > INSTRUCTION_BITS:
            raise AssertionError(f"{op.name}: {total} bits exceed {INSTRUCTION_BITS}")


_check_layouts()


@dataclass
class Instruction:
    """A decoded instruction: opcode, token flags and the opcode's fields by name."""

    opcode: Opcode
    fields: dict[str, int]
    pop_prev: bool = False
    pop_next: bool = False
    push_prev: bool = False
    push_next: bool = False

    def __getattr__(self, name: str) -> int:
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def module(self) -> Module:
        if self.opcode == Opcode.NOP:
            return Module(self.fields["module"])
        return MODULE_OF[self.opcode]

    def encode(self) -> bytes:
        return encode(self)

    def __str__(self) -> str:
        toks = "".join(c if getattr(self, f) else "." for c, f in zip("PpUu", TOKEN_FIELDS))
        body = " ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"{self.opcode.name:<6} [{toks}] {body}"


def make(opcode: Opcode, **kw) -> Instruction:
    """An instruction with the given fields (missing fields are 0); token flags by name."""
    tokens = {k: bool(kw.pop(k, False)) for k in TOKEN_FIELDS}
    names = [n for n, _, _ in LAYOUTS[opcode]]
    unknown = set(kw) - set(names)
    if unknown:
        raise ISAError(f"{opcode.name}: unknown field(s) {', '.join(sorted(unknown))}")
    return Instruction(opcode, {n: int(kw.get(n, 0)) for n in names}, **tokens)


def encode(ins: Instruction) -> bytes:
    word = int(ins.opcode) & 0xF
    for i, name in enumerate(TOKEN_FIELDS):
        word |= int(bool(getattr(ins, name))) << (4 + i)
    pos = 8
    for name, bits, signed in LAYOUTS[ins.opcode]:
        v = int(ins.fields.get(name, 0))
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if not lo <= v <= hi:
            raise ISAError(f"{ins.opcode.name}.{name}={v} does not fit {bits} {'signed' if signed else 'unsigned'} "
                           f"bits ({lo}..{hi})")
        word |= (v & ((1 << bits) - 1)) << pos
        pos += bits
    return word.to_bytes(INSTRUCTION_BYTES, "little")


def decode(data: bytes) -> Instruction:
    if len(data) != INSTRUCTION_BYTES:
        raise ISAError(f"an instruction is {INSTRUCTION_BYTES} bytes, got {len(data)}")
    word = int.from_bytes(data, "little")
    try:
        opcode = Opcode(word & 0xF)
    except ValueError:
        raise ISAError(f"unknown opcode {word & 0xF}") from None
    tokens = {name: bool((word >> (4 + i)) & 1) for i, name in enumerate(TOKEN_FIELDS)}
    pos = 8
    values = {}
    for name, bits, signed in LAYOUTS[opcode]:
        v = (word >> pos) & ((1 << bits) - 1)
        if signed and v >> (bits - 1):
            v -= 1 << bits
        values[name] = v
        pos += bits
    if word >> pos:
        raise ISAError(f"{opcode.name}: reserved bits {pos}..{INSTRUCTION_BITS - 1} are not zero")
    return Instruction(opcode, values, **tokens)


def encode_program(instructions: list[Instruction]) -> bytes:
    return b"".join(encode(i) for i in instructions)


def decode_program(data: bytes) -> list[Instruction]:
    if len(data) % INSTRUCTION_BYTES:
        raise ISAError(f"program of {len(data)} bytes is not a whole number of {INSTRUCTION_BYTES}-byte instructions")
    return [decode(data[i:i + INSTRUCTION_BYTES]) for i in range(0, len(data), INSTRUCTION_BYTES)]


def weight_groups(out_channels: int, lanes: int) -> int:
    """Lane groups of a GEMM's weights: ``ceil(out_channels / lanes)``."""
    return -(-out_channels // lanes)


def acc_bytes(out_channels: int, pixels: int, lanes: int) -> int:
    """Bytes a GEMM's partial sums occupy in ACC: ``[groups, pixels, lanes]`` int32."""
    return weight_groups(out_channels, lanes) * pixels * lanes * 4


def weight_segment(kw: int, channels: int, dilation_w: int = 1) -> int:
    """K elements of one contiguous segment of a GEMM's input band: a kernel row's ``kw * channels``
    (its taps are adjacent), or one tap's ``channels`` when ``dilation_w > 1``."""
    return kw * channels if dilation_w == 1 else channels


def stored_k(k: int, seg_len: int, width: int) -> int:
    """K' of WGT's layout: the ``k // seg_len`` segments of ``k`` (``seg_len`` each), every one
    padded with zeros to whole MAC beats of ``width``."""
    if seg_len < 1 or k % seg_len:
        raise ValueError(f"stored_k: K={k} is not a whole number of {seg_len}-element segments")
    return k // seg_len * -(-seg_len // width) * width


def gemm_stored_k(f: dict, width: int) -> int:
    """K' of a GEMM with fields ``f`` on an engine of MAC width ``width``."""
    c, kw = f["channels"], f["kw"]
    return stored_k(f["kh"] * kw * c, weight_segment(kw, c, f["dilation_w"]), width)


def weight_bytes(out_channels: int, k_stored: int, lanes: int) -> int:
    """Bytes a GEMM's lane-interleaved weights occupy in WGT (``k_stored``: K', ``stored_k``; the
    last group padded to ``lanes``)."""
    return weight_groups(out_channels, lanes) * k_stored * lanes


def pack_weights(wmat, lanes: int, width: int, seg_len: int) -> bytes:
    """A GEMM's ``[out_channels, K]`` int8 weight matrix in WGT's layout.

    K is cut into segments of ``seg_len`` (``weight_segment``: what one run of MAC beats covers)
    and each is padded with zeros to a multiple of ``width``, giving K' (``stored_k``). The layout
    is ``[ceil(out_channels / lanes), K', lanes]`` (group, k', lane): weight ``w[j, s * seg_len +
    e]`` sits at byte ``((j // lanes) * K' + s * ceil(seg_len / width) * width + e) * lanes + j %
    lanes``; the padding and the lanes past ``out_channels`` in the last group are zero. Every MAC
    beat (the ``width`` k'-values from a multiple of ``width``, every lane of group ``g``) is then
    the ``lanes * width`` consecutive bytes at a multiple of ``lanes * width`` from the start,
    which the engine reads from WGT in one aligned access, the beats of one dot product one after
    another.
    """
    import numpy as np

    if not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"pack_weights: lanes must be a positive integer, got {lanes!r}")
    w = np.asarray(wmat)
    if w.ndim != 2:
        raise ValueError(f"pack_weights: expected an [out_channels, K] matrix, got shape {w.shape}")
    if w.dtype != np.int8:
        if w.size and (w.min() < -128 or w.max() > 127):
            raise ValueError("pack_weights: weights must be int8 values")
        w = w.astype(np.int8)
    ct, k = w.shape
    kp = stored_k(k, seg_len, width)
    segs, seg_pad = k // seg_len, kp // (k // seg_len) if k else 0
    groups = weight_groups(ct, lanes)
    padded = np.zeros((groups * lanes, segs, seg_pad), dtype=np.int8)
    padded[:ct, :, :seg_len] = w.reshape(ct, segs, seg_len)
    return np.ascontiguousarray(padded.reshape(groups, lanes, kp).transpose(0, 2, 1)).tobytes()


def unpack_weights(buf, ct: int, k: int, lanes: int, width: int, seg_len: int):
    """The ``[ct, k]`` weight matrix from its bytes in WGT's layout (``pack_weights``' inverse).

    ``buf`` is ``bytes`` (read as int8) or a 1-D NumPy array (its dtype is kept) of at least
    ``weight_bytes(ct, stored_k(k, seg_len, width), lanes)`` elements; the padding is ignored.
    """
    import numpy as np

    a = np.frombuffer(bytes(buf), dtype=np.int8) if isinstance(buf, (bytes, bytearray, memoryview)) else np.asarray(buf)
    kp = stored_k(k, seg_len, width)
    n = weight_bytes(ct, kp, lanes)
    if a.ndim != 1 or a.size < n:
        raise ValueError(f"unpack_weights: need {n} weight bytes for {ct} x {k} in groups of {lanes}, got {a.shape}")
    groups, segs = weight_groups(ct, lanes), k // seg_len
    m = a[:n].reshape(groups, kp, lanes).transpose(0, 2, 1).reshape(groups * lanes, segs, kp // segs if segs else 0)
    return m[:ct, :, :seg_len].reshape(ct, k)


def field_names(opcode: Opcode) -> list[str]:
    return [n for n, _, _ in LAYOUTS[opcode]]


def field_range(opcode: Opcode, name: str) -> tuple[int, int]:
    for n, bits, signed in LAYOUTS[opcode]:
        if n == name:
            return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    raise ISAError(f"{opcode.name} has no field {name!r}")


__all__ = ["ADD_PARAM_WORDS", "MUL_PARAM_WORDS", "Buffer", "ENUM_FIELDS", "Epilogue", "GEMM_PARAM_WORDS", "HeaderLayout", "INSTRUCTION_BYTES",
           "ISAError", "Instruction", "InstructionLayout", "LAYOUTS", "Module", "Opcode", "PARAM_RECORDS", "QUEUES",
           "RESCALE_PARAM_WORDS", "TOKEN_FIELDS", "TOKEN_QUEUES", "VecFunc", "acc_bytes", "decode", "decode_program", "encode",
           "encode_program", "field_bits", "field_layout", "field_names", "field_range", "gemm_stored_k", "make",
           "pack_weights", "record_layout", "stored_k", "unpack_weights", "weight_bytes", "weight_groups",
           "weight_segment"]
