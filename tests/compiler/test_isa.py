"""The ISA's one definition: every instruction encodes to 32 bytes and decodes to itself."""

import pytest
from hypothesis import given, settings, strategies as st

from onda.hw import isa
from onda.hw.isa import Opcode


@st.composite
def instructions(draw, opcode=None):
    op = draw(st.sampled_from(list(Opcode))) if opcode is None else opcode
    fields = {}
    for name, bits, signed in isa.LAYOUTS[op]:
        lo, hi = isa.field_range(op, name)
        fields[name] = draw(st.integers(lo, hi))
    tokens = {t: draw(st.booleans()) for t in isa.TOKEN_FIELDS}
    return isa.make(op, **fields, **tokens)


@pytest.mark.parametrize("opcode", list(Opcode), ids=lambda o: o.name)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_round_trip_every_instruction(opcode, data):
    ins = data.draw(instructions(opcode))
    raw = isa.encode(ins)
    assert len(raw) == isa.INSTRUCTION_BYTES
    back = isa.decode(raw)
    assert back.opcode == ins.opcode
    assert back.fields == ins.fields
    assert [getattr(back, t) for t in isa.TOKEN_FIELDS] == [getattr(ins, t) for t in isa.TOKEN_FIELDS]
    assert isa.encode(back) == raw


@settings(max_examples=50, deadline=None)
@given(st.lists(instructions(), min_size=1, max_size=20))
def test_program_round_trip(prog):
    raw = isa.encode_program(prog)
    assert len(raw) == 32 * len(prog)
    assert [(i.opcode, i.fields) for i in isa.decode_program(raw)] == [(i.opcode, i.fields) for i in prog]


def test_field_extremes_are_distinct_bits():
    """Setting one field to its maximum leaves every other field zero: layouts do not overlap."""
    for op, layout in isa.LAYOUTS.items():
        for name, bits, signed in layout:
            lo, hi = isa.field_range(op, name)
            for v in {lo, hi}:
                back = isa.decode(isa.encode(isa.make(op, **{name: v})))
                assert back.fields[name] == v
                assert all(val == 0 for k, val in back.fields.items() if k != name), (op.name, name)


def test_out_of_range_field_names_the_field():
    with pytest.raises(isa.ISAError, match=r"GEMM.kh=16 does not fit 4 unsigned bits"):
        isa.encode(isa.make(Opcode.GEMM, kh=16))
    with pytest.raises(isa.ISAError, match=r"LOAD.pad_value=-129"):
        isa.encode(isa.make(Opcode.LOAD, pad_value=-129))
    with pytest.raises(isa.ISAError, match="unknown field"):
        isa.make(Opcode.STORE, kh=1)


def test_bad_words_are_refused():
    with pytest.raises(isa.ISAError, match="unknown opcode 15"):
        isa.decode(bytes([15]) + bytes(31))
    with pytest.raises(isa.ISAError, match="reserved bits"):
        isa.decode(bytes([int(Opcode.FINISH)]) + bytes(30) + b"\x80")
    with pytest.raises(isa.ISAError, match="32 bytes"):
        isa.decode(bytes(31))
    with pytest.raises(isa.ISAError, match="whole number"):
        isa.decode_program(bytes(40))
