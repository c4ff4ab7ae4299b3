"""DL/T 645 codec: frames built by hand from the spec's rules, bad input, and fuzzing."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.dlt645.data import (
    DataError,
    decode_number,
    decode_text,
    decode_time,
    encode_number,
    encode_time,
    parse_format,
)
from drivers.dlt645.frame import (
    AddressError,
    Frame,
    FrameError,
    Receiver,
    check_address,
    encode_frame,
    error_text,
    read_address_request,
    read_request,
)

ADDRESS = "123456789012"


def events(data: bytes) -> list[Frame | FrameError]:
    rx = Receiver()
    rx.feed(data)
    out = []
    while (event := rx.next_event()) is not None:
        out.append(event)
    return out


def test_read_request_bytes_follow_the_spec() -> None:
    wire = encode_frame(read_request(ADDRESS, 0x00010000))
    assert wire[:4] == b"\xfe\xfe\xfe\xfe"  # wake-up preamble
    body = wire[4:]
    assert body[0] == 0x68 and body[7] == 0x68
    assert body[1:7] == bytes.fromhex("129078563412")  # least significant byte first
    assert body[8:10] == bytes([0x11, 4])
    assert body[10:14] == bytes.fromhex("33333433")  # DI0 first, each +0x33
    assert body[14] == sum(body[:14]) & 0xFF  # checksum over the bytes as sent
    assert body[15] == 0x16
    assert encode_frame(read_request(ADDRESS, 0x00010000), preamble=False) == body


def test_reply_decodes_with_and_without_preamble() -> None:
    reply = Frame(ADDRESS, 0x91, bytes.fromhex("00000100") + bytes.fromhex("78563412"))
    for wire in (encode_frame(reply), encode_frame(reply, preamble=False)):
        (frame,) = events(wire)
        assert frame == reply and frame.is_reply and not frame.is_error
    value = decode_number(reply.data[4:], parse_format("XXXXXX.XX"))
    assert value == pytest.approx(123456.78)


def test_bad_input_is_an_event_never_an_exception() -> None:
    good = encode_frame(Frame(ADDRESS, 0x91, b"\x00\x00\x01\x00\x11\x22\x33\x44"))
    broken = bytearray(good)
    broken[-2] ^= 0xFF  # checksum
    found = events(b"\x01\x02" + bytes(broken) + good)
    assert isinstance(found[0], FrameError) and found[0].kind == "noise"
    assert isinstance(found[1], FrameError) and found[1].kind == "checksum"
    assert isinstance(found[2], Frame)
    rx = Receiver()
    rx.feed(good[:-3])  # truncated: wait for more
    assert rx.next_event() is None and rx.pending
    non_bcd = bytearray(encode_frame(Frame(ADDRESS, 0x91, b""), preamble=False))
    non_bcd[1] = 0x1B
    non_bcd[-2] = sum(non_bcd[:-2]) & 0xFF
    (bad,) = events(bytes(non_bcd))
    assert isinstance(bad, FrameError) and bad.kind == "address"


def test_addresses_values_and_errors() -> None:
    assert check_address("aaaaaaaaaaaa") == "AAAAAAAAAAAA"
    assert read_address_request().address == "AAAAAAAAAAAA"
    for bad in ("12345678901", "12345678901A", "1234567890123"):
        with pytest.raises(AddressError):
            check_address(bad)
    assert error_text(0x02) == "error 02 (no requested data)"
    signed = parse_format("XX.XXXX")
    assert encode_number(-7.5, signed, signed=True) == bytes([0x00, 0x50, 0x87])
    assert decode_number(bytes([0x00, 0x50, 0x87]), signed, signed=True) == -7.5
    with pytest.raises(DataError, match="not BCD"):
        decode_number(bytes([0x1A, 0x00, 0x00, 0x00]), parse_format("XXXXXX.XX"))
    with pytest.raises(DataError, match="needs 2"):
        decode_number(b"\x01", parse_format("XXX.X"))
    moment = datetime.datetime(2026, 12, 3, 8, 9, 10)
    stamp = parse_format("YYMMDDhhmmss")
    assert decode_time(encode_time(moment, stamp), stamp) == moment
    with pytest.raises(DataError, match="not a date"):
        decode_time(bytes.fromhex("000000991326"), stamp)
    assert decode_text(bytes.fromhex("563412"), parse_format("NNNNNN")) == "123456"
    assert decode_text(b"0.1V", parse_format("ascii")) == "V1.0"
    with pytest.raises(ValueError, match="format like"):
        parse_format("XXX.")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_never_raise(data: bytes) -> None:
    rx = Receiver()
    for i in range(0, len(data), 7):
        rx.feed(data[i : i + 7])
        while rx.next_event() is not None:
            pass
    assert rx.pending <= len(data)


@settings(max_examples=300, deadline=None)
@given(
    st.text("0123456789", min_size=12, max_size=12),
    st.sampled_from([0x91, 0xB1, 0xD1, 0x93, 0x11]),
    st.binary(max_size=200),
    st.binary(max_size=20).filter(lambda b: 0x68 not in b),
    st.integers(min_value=1, max_value=40),
)
def test_fuzz_frames_survive_noise_and_chunking(
    address: str, control: int, data: bytes, noise: bytes, chunk: int
) -> None:
    frame = Frame(address, control, data)
    wire = noise + encode_frame(frame) + encode_frame(frame, preamble=False)
    rx = Receiver()
    got: list[Frame] = []
    for i in range(0, len(wire), chunk):
        rx.feed(wire[i : i + chunk])
        while (event := rx.next_event()) is not None:
            if isinstance(event, Frame):
                got.append(event)
    assert got == [frame, frame]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=99_999_999), st.booleans())
def test_fuzz_numbers_round_trip(raw: int, negative: bool) -> None:
    fmt = parse_format("XXXXXX.XX")
    value = raw / 100
    assert decode_number(encode_number(value, fmt), fmt) == pytest.approx(value)
    small = parse_format("XX.XXXX")
    limited = (raw % 800_000) / 10_000 * (-1 if negative else 1)
    assert decode_number(encode_number(limited, small, signed=True), small, signed=True) == (
        pytest.approx(limited)
    )
