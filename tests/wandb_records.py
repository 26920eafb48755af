"""Read the records of an offline W&B run file (`run-<id>.wandb`) to check what a run really logged.

The file is W&B's 7-byte header followed by LevelDB's log format (32 KiB blocks of checksummed
chunks); each record is a `wandb_internal_pb2.Record`. wandb 0.31 no longer ships a Python reader.
"""

import struct
from pathlib import Path

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < 7:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def run_record(path: Path):
    return next(r.run for r in records(path) if r.WhichOneof("record_type") == "run")


def summary(path: Path) -> dict:
    import json

    out = {}
    for r in records(path):
        if r.WhichOneof("record_type") == "summary":
            for item in r.summary.update:
                out["/".join(item.nested_key) if item.nested_key else item.key] = json.loads(item.value_json)
    return out


def history_keys(path: Path) -> set:
    """Every key the run logged to its history (what W&B line plots can read)."""
    keys = set()
    for r in records(path):
        if r.WhichOneof("record_type") == "history":
            keys.update("/".join(item.nested_key) if item.nested_key else item.key for item in r.history.item)
    return keys
