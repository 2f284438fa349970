"""The testbench's fast signal reader: the number int(handle.value) would give, from the GPI bit string."""

import pytest

from pimphony.verification.env.signals import reader


class _Gpi:
    def __init__(self, bits: str):
        self.bits = bits

    def get_signal_val_binstr(self) -> str:
        return self.bits


class _Handle:
    def __init__(self, bits: str | None, value: int = 0):
        if bits is not None:
            self._handle = _Gpi(bits)
        self.value = value


def test_reader_parses_the_bit_string_and_rejects_x():
    assert reader(_Handle("0"))() == 0
    assert reader(_Handle("1"))() == 1
    assert reader(_Handle("0101101"))() == 0b0101101
    handle = _Handle("10")
    read = reader(handle)
    handle._handle.bits = "11"                       # read at call time, not when the reader was made
    assert read() == 3
    with pytest.raises(ValueError):
        reader(_Handle("1x0"))()


def test_reader_falls_back_to_the_value_without_a_gpi_handle():
    assert reader(_Handle(None, value=7))() == 7
