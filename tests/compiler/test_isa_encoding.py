"""The encoding pinned from hw/ISA.md, independently of ``isa.LAYOUTS``: the bit ranges the document's
tables give, the Amaranth layouts the RTL decodes with, and literal instruction bytes."""

import re
from pathlib import Path

import pytest

from onda.hw import isa
from onda.hw.isa import Buffer, Epilogue, Module, Opcode, VecFunc

ISA_MD = Path(isa.__file__).with_name("ISA.md")


def doc_fields() -> dict[Opcode, list[tuple[str, int, int, bool]]]:
    """(field, lo, hi, signed) per opcode, read from the tables under '### NAME (opcode N)'."""
    out: dict[Opcode, list] = {}
    current = None
    for line in ISA_MD.read_text().splitlines():
        m = re.match(r"### (\w+) \(opcode (\d+)\)", line)
        if m:
            current = Opcode(int(m.group(2)))
            assert current.name == m.group(1)
            out[current] = []
            continue
        m = re.match(r"\| (\d+)\.\.(\d+) \| `(\w+)` \| *(yes)? *\|", line)
        if m and current is not None:
            out[current].append((m.group(3), int(m.group(1)), int(m.group(2)), m.group(4) == "yes"))
    return out


def pack_from_doc(opcode: Opcode, tokens: int, **values) -> bytes:
    word = int(opcode) | tokens << 4
    for name, lo, hi, signed in doc_fields()[opcode]:
        v = values.get(name, 0)
        word |= (v & ((1 << (hi - lo + 1)) - 1)) << lo
    return word.to_bytes(32, "little")


def test_document_lists_every_opcode():
    assert set(doc_fields()) == set(Opcode)


@pytest.mark.parametrize("opcode", list(Opcode), ids=lambda o: o.name)
def test_layouts_match_the_document(opcode):
    doc = doc_fields()[opcode]
    assert [d[0] for d in doc] == isa.field_names(opcode)
    layout = isa.field_layout(opcode)
    for name, lo, hi, signed in doc:
        f = layout[name]
        assert (isa.HEADER_BITS + f.offset, f.width) == (lo, hi - lo + 1), name
        assert f.shape.signed == signed if hasattr(f.shape, "signed") else not signed, name
    # The whole-word view the decoder uses places the body right above the 8-bit header.
    whole = isa.InstructionLayout
    assert whole.size == isa.INSTRUCTION_BITS
    assert whole["header"].width == isa.HEADER_BITS and whole["body"].offset == isa.HEADER_BITS
    assert isa.field_bits(opcode) == (doc[-1][2] + 1 - isa.HEADER_BITS if doc else 0)


# Literal vectors: (instruction, its 32 bytes as hex, little-endian), worked out by hand from ISA.md.
LITERALS = [
    (isa.make(Opcode.FINISH), "05" + "00" * 31),
    (isa.make(Opcode.NOP, module=Module.STORE, pop_prev=True, push_prev=True), "5002" + "00" * 30),
    # LOAD buffer=WGT(1) at bits 8..9, sram_addr=1 at bit 10, pad_value=-1 at bits 178..185, push_next.
    (isa.make(Opcode.LOAD, buffer=Buffer.WGT, sram_addr=1, pad_value=-1, push_next=True),
     "8105" + "00" * 20 + "fc03" + "00" * 8),
]


@pytest.mark.parametrize("ins,hexbytes", LITERALS, ids=lambda v: str(v)[:20])
def test_literal_bytes(ins, hexbytes):
    assert isa.encode(ins).hex() == hexbytes
    assert isa.decode(bytes.fromhex(hexbytes)).fields == ins.fields


CASES = [
    (Opcode.LOAD, dict(buffer=Buffer.PARAM, sram_addr=0xABCDE, dram_addr=0xDEADBEEF, y_size=0x1234, x_size=0x56789A,
                       dram_stride=0xBCDEF0, pad_top=7, pad_bottom=200, pad_left=0x4321, pad_right=0x8765, pad_value=-128)),
    (Opcode.STORE, dict(buffer=Buffer.ACT, sram_addr=0xFFFFFF, dram_addr=1, y_size=0xFFFF, x_size=3, dram_stride=0x800000)),
    (Opcode.GEMM, dict(act_addr=0x123456, wgt_addr=0x654321, param_addr=0xFFFFF, out_addr=0x00F00F, in_rows=0xABC,
                       in_cols=0xDEF, channels=0xFEDC, out_rows=1, out_cols=0xFFF, out_channels=0x8001, kh=15, kw=1,
                       stride_h=2, stride_w=3, dilation_h=4, dilation_w=5, out_zp=-7, act_min=-128, act_max=127,
                       epilogue=Epilogue.DOUBLE)),
    (Opcode.VEC, dict(func=VecFunc.SPACE_TO_DEPTH, src_addr=0x111111, src2_addr=0x222222, dst_addr=0x333333,
                      param_addr=0x44444, in_rows=0x555, in_cols=0x666, channels=0x7777, out_rows=0x888, out_cols=0x999,
                      kh=0xAA, kw=0xBB, stride_h=0xC, stride_w=0xD, pad_top=0xE, pad_left=0xF, act_min=-1, act_max=-2)),
]


@pytest.mark.parametrize("opcode,fields", CASES, ids=lambda v: getattr(v, "name", ""))
def test_every_field_where_the_document_puts_it(opcode, fields):
    tokens = 0b1010
    ins = isa.make(opcode, **fields, pop_next=True, push_next=True)
    assert isa.encode(ins) == pack_from_doc(opcode, tokens, **fields)
    # The Amaranth view of the same bits reads every field back.
    view = isa.InstructionLayout.from_bits(int.from_bytes(isa.encode(ins), "little"))
    body = getattr(view.body, opcode.name.lower())
    assert view.header.opcode == opcode and view.header.pop_next == 1 and view.header.push_prev == 0
    for name, v in fields.items():
        assert int(body[name]) == int(v), name


def test_reserved_bits_refused():
    raw = bytearray(isa.encode(isa.make(Opcode.FINISH)))
    raw[31] = 0x80
    with pytest.raises(isa.ISAError, match="reserved bits"):
        isa.decode(bytes(raw))


def test_token_queue_table():
    # Each queue is pushed by exactly one module flag and popped by exactly one: the chain
    # load -> compute -> store of ISA.md's table.
    pushes = {q: (m, f) for m, qs in isa.TOKEN_QUEUES.items() for f, q in zip(isa.TOKEN_FIELDS, qs)
              if q and f.startswith("push")}
    pops = {q: (m, f) for m, qs in isa.TOKEN_QUEUES.items() for f, q in zip(isa.TOKEN_FIELDS, qs)
            if q and f.startswith("pop")}
    assert pushes == {"l2c": (Module.LOAD, "push_next"), "c2l": (Module.COMPUTE, "push_prev"),
                      "c2s": (Module.COMPUTE, "push_next"), "s2c": (Module.STORE, "push_prev")}
    assert pops == {"l2c": (Module.COMPUTE, "pop_prev"), "c2l": (Module.LOAD, "pop_next"),
                    "c2s": (Module.STORE, "pop_prev"), "s2c": (Module.COMPUTE, "pop_next")}
    assert set(isa.QUEUES) == set(pushes)


def test_param_records():
    assert isa.GEMM_PARAM_WORDS == 3 and isa.ADD_PARAM_WORDS == 9 and isa.RESCALE_PARAM_WORDS == 4
    assert isa.record_layout("add").size == 9 * 32
    assert [n for n, _ in isa.record_layout("rescale")] == ["in_zp", "multiplier", "shift", "out_zp"]
