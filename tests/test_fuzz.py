"""Damaged and crafted checkpoints: a seeded generator of mutations (bit flips, truncations,
record fields replaced by values of the wrong type, negatives, huge numbers, deep nesting,
header entries of the wrong type) run through `load`, the first step every command takes with
a checkpoint (`info`'s describe: the model built, its sizes counted) and `cfctool info` itself
(which prints every section). Each case must end in a CfcError (exit 1) or in success, never
in another exception, and quickly."""

import contextlib
import io
import json
import random
import struct
import time

import pytest
from helpers import resign, with_record

from cfctool import checkpoint
from cfctool.errors import CfcError
from cfctool.ops.info import describe

CASES = 300
BAD_VALUES = [None, -1, 0, 10**9, 2**64, -0.5, 1e308, float("nan"), "x", "", True, [], {}, [1, -2], {"a": 1}]


def _split(data: bytes):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join(header: dict, body: bytes, raw_record: str | None = None) -> bytes:
    """The file again, its header hash made to match (what loading checks beyond the hash is fuzzed)."""
    if raw_record is None:
        return resign(header, body)
    head = json.dumps(header).encode()
    if raw_record is not None:  # text json.dumps cannot make (huge integers, deep nesting)
        head = head.replace(json.dumps(json.dumps("@RECORD@")).encode()[1:-1], raw_record.encode())
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + body


def _paths(node, prefix=()):
    """Every place in a record (dict keys and list items), as key paths."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:5]):
            yield from _paths(v, (*prefix, i))


def _mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    header, body = _split(data)
    record = json.loads(header["__metadata__"]["cfctool.record"])
    kind = rng.choice(["field", "field", "field", "flip-header", "flip-data", "truncate", "entry", "huge-int",
                       "deep", "drop-section"])
    if kind == "field":
        path, value = rng.choice([p for p in _paths(record) if p]), rng.choice(BAD_VALUES)

        def replace(r):
            target = r
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        return f"{'.'.join(map(str, path))} = {value!r}", with_record(data, replace)
    if kind == "flip-header":
        n = struct.unpack("<Q", data[:8])[0]
        at = rng.randrange(8, 8 + n)
        return f"bit flip at header byte {at}", data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1:]
    if kind == "flip-data":
        at = rng.randrange(len(data) - len(body), len(data))
        return f"bit flip at data byte {at}", data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1:]
    if kind == "truncate":
        at = rng.randrange(0, len(data))
        return f"truncated to {at} bytes", data[:at]
    if kind == "entry":
        name = rng.choice([k for k in header if k != "__metadata__"])
        field = rng.choice(["dtype", "shape", "data_offsets"])
        header[name][field] = rng.choice(BAD_VALUES + [[0, 10**12], [5, 1], ["a"], [-1]])
        return f"header {name}.{field}", _join(header, body)
    if kind == "huge-int":
        header["__metadata__"]["cfctool.record"] = "@RECORD@"
        raw = json.dumps(record).replace('"hidden": ', '"hidden": ' + "9" * 5000 + ", \"_\": ", 1)
        return "an integer of 5000 digits", _join(header, body, json.dumps(raw)[1:-1])
    if kind == "deep":
        header["__metadata__"]["cfctool.record"] = "@RECORD@"
        raw = json.dumps({**record, "metrics": "@DEEP@"}).replace('"@DEEP@"', "[" * 100000 + "]" * 100000)
        return "metrics nested 100,000 deep", _join(header, body, json.dumps(raw)[1:-1])
    section = rng.choice(["arch", "task", "tensors", "encodings", "history", "metrics"])
    return f"record without {section}", with_record(data, lambda r: r.pop(section, None))


@pytest.mark.slow
def test_damaged_and_crafted_checkpoints_end_in_a_clear_error(trained_xor, tmp_path):
    from cfctool.cli.app import main

    rng = random.Random(20261206)
    sources = [trained_xor[a].read_bytes() for a in ("cfc", "cfc-ncp", "ltc")]
    started, worst, outcomes = time.perf_counter(), (0.0, ""), {"error": 0, "loaded": 0}
    for case in range(CASES):
        what, data = _mutate(rng.choice(sources), rng)
        t0 = time.perf_counter()
        try:
            describe(checkpoint.load_bytes(data, source=f"case-{case}.st"))
            outcomes["loaded"] += 1
        except CfcError:
            outcomes["error"] += 1
        except BaseException as exc:  # noqa: BLE001 - the point: nothing else may escape
            pytest.fail(f"case {case} ({what}): {type(exc).__name__}: {str(exc)[:200]}")
        path = tmp_path / "case.st"
        path.write_bytes(data)
        err = io.StringIO()
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                main(["info", str(path)])
            code = 0
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:  # noqa: BLE001
            pytest.fail(f"case {case} ({what}): cfctool info raised {type(exc).__name__}: {str(exc)[:200]}")
        assert code in (0, 1) and (code == 0 or err.getvalue().startswith("error: ")), (case, what, err.getvalue())
        worst = max(worst, (time.perf_counter() - t0, what))
    total = time.perf_counter() - started
    assert outcomes["error"] > CASES // 2  # most mutations must be caught, not silently loaded
    assert worst[0] < 2.0, worst
    assert total < 60, total
