"""The RTL's constants come from control's hardware spec and wire protocol, and agree with them."""

from __future__ import annotations

import re

from control import wire
from control.hardware import DEFAULT_HARDWARE, REGISTER_MAP
from firmware.spec import HEADER, verilog_header


def defines(text: str) -> dict[str, str]:
    return dict(re.findall(r"^`define (\w+) ([^\s/]+)", text, flags=re.M))


def test_the_committed_header_is_what_the_spec_generates():
    assert HEADER.read_text() == verilog_header(), "run `python -m firmware.spec` and commit the header"


def test_the_header_carries_the_hardware_numbers():
    d = defines(HEADER.read_text())
    hw = DEFAULT_HARDWARE
    assert int(d["PFM_CLOCK_HZ"]) == hw.clock
    assert int(d["PFM_PULSE_LATENCY_CYCLES"]) == hw.pulse_latency_cycles
    assert int(d["PFM_PULSE_MIN_CYCLES"]) == round(hw.pulse_width_min * hw.clock)
    assert int(d["PFM_DAC_FULL_SCALE"]) == 2 ** (hw.dac_bits - 1) - 1
    assert d["PFM_SYNC"] == f"8'h{wire.SYNC:02X}"
    for name, address in REGISTER_MAP.items():
        assert int(d[f"PFM_REG_{name}"].split("'h")[1], 16) == address
    for cmd in wire.Cmd:
        assert int(d[f"PFM_CMD_{cmd.name}"].split("'h")[1], 16) == cmd.value
    assert len(set(REGISTER_MAP.values())) == len(REGISTER_MAP), "register addresses must be unique"


def test_the_header_carries_access_masks_bits_and_nak_texts():
    from control.hardware import CONTROL_BITS, READ_ONLY_REGISTERS, STATUS_BITS, WRITE_ONLY_REGISTERS
    from firmware.spec import COMMAND_LATENCY_CYCLES, nak_messages

    text = HEADER.read_text()
    d = defines(text)
    readable = int(d["PFM_REG_READABLE"].split("'h")[1], 16)
    writable = int(d["PFM_REG_WRITABLE"].split("'h")[1], 16)
    for name, address in REGISTER_MAP.items():
        assert bool(readable >> address & 1) == (name not in WRITE_ONLY_REGISTERS), name
        assert bool(writable >> address & 1) == (name not in READ_ONLY_REGISTERS), name
    assert readable >> 0x3F & 1 == 0 and writable >> 0x3F & 1 == 0, "unknown addresses must be refused"
    for name, bit in {**{f"STATUS_{k}": v for k, v in STATUS_BITS.items()},
                      **{f"CONTROL_{k}": v for k, v in CONTROL_BITS.items()}}.items():
        assert int(d[f"PFM_{name}"]) == bit
    assert int(d["PFM_UART_CLKS_PER_BIT"]) == round(DEFAULT_HARDWARE.clock / DEFAULT_HARDWARE.uart_baud)
    assert int(d["PFM_COMMAND_LATENCY_CYCLES"]) == COMMAND_LATENCY_CYCLES
    for name, (code, message) in nak_messages().items():
        assert f'`define PFM_MSG_{name} "{message}"' in text
        assert int(d[f"PFM_MSG_{name}_LEN"]) == len(message)
        assert int(d[f"PFM_MSG_{name}_CODE"].split("'h")[1], 16) == code
