"""Byte sources and the row planner: row reads return exactly numpy's rows and cost only their bytes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from audit.checkpoint import open_checkpoint
from audit.checkpoint.source import LocalFileSource, plan_ranges, read_ranges
from audit.errors import InputError
from tests.support import tiny


def test_local_source_reads_exact_bytes_and_counts_them(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    src = LocalFileSource(p)
    assert src.size == 10_000 and src.read(123, 456) == data[123:579] and src.read(9_990, 10) == data[-10:]
    assert (src.counter.bytes_read, src.counter.reads) == (466, 2)
    with pytest.raises(InputError, match="past the end"):
        src.read(9_995, 10)


def test_local_source_takes_regular_files_only(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a regular file"):
        LocalFileSource(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError):
        LocalFileSource(fifo)  # opened non-blocking would hang a reader; refused before any read


def test_plan_merges_close_runs_and_splits_long_ones() -> None:
    runs = [(105, 200), (0, 50), (60, 90)]  # gaps of 10 and 15 bytes
    assert plan_ranges(runs, gap=9) == [(0, 50), (60, 90), (105, 200)]
    assert plan_ranges(runs, gap=10) == [(0, 90), (105, 200)]
    assert plan_ranges(runs, gap=15) == [(0, 200)]
    assert plan_ranges([(0, 10), (5, 20), (20, 30)], gap=0) == [(0, 30)]  # overlapping and touching runs join
    parts = plan_ranges([(0, 1000)], gap=0, part=300)
    assert parts[0][0] == 0 and parts[-1][1] == 1000 and all(e - s <= 300 for s, e in parts)
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))


def test_range_data_joins_runs_split_for_parallel_fetching(tmp_path: Path) -> None:
    data = os.urandom(5000)
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    got = read_ranges(LocalFileSource(p), [(10, 4000)])
    assert bytes(got.view(10, 4000)) == data[10:4000] and bytes(got.view(500, 600)) == data[500:600]


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """A safetensors file with rows big enough that the planner's gap rule matters (4 KiB rows)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    arrays = {"emb": rng.normal(size=(300, 1024)).astype(np.float32), "down": rng.normal(size=(64, 1024)).astype(np.float32),
              "norm": rng.normal(size=(1024,)).astype(np.float32)}
    path = tmp_path_factory.mktemp("wide") / "w.safetensors"
    save_file(arrays, str(path))
    return path, arrays


@pytest.mark.parametrize("rows", [np.array([299, 3, 3, -1, 150]), np.array([], dtype=np.int64), np.array([[1, 2], [7, 0]]),
                                  slice(5, 60, 7), slice(None, None, -3), slice(290, None)],
                         ids=["unsorted-repeats-negative", "empty", "2d-ids", "step", "reversed", "tail"])
def test_read_rows_is_numpy_indexing(wide, rows) -> None:
    path, arrays = wide
    got = open_checkpoint(path).read_rows("emb", rows)
    np.testing.assert_array_equal(got, arrays["emb"][rows])
    assert got.dtype == np.float32 and got.flags.writeable


def test_out_of_range_rows_raise_index_error(wide) -> None:
    path, _ = wide
    with pytest.raises(IndexError):
        open_checkpoint(path).read_rows("emb", np.array([300]))


def test_row_reads_cost_their_bytes_not_the_tensor(wide) -> None:
    path, arrays = wide
    ckpt = open_checkpoint(path)
    assert ckpt.io is not None and ckpt.io.bytes_total == path.stat().st_size
    header = ckpt.io.bytes_read
    row = 1024 * 4
    ids = np.array([0, 100, 200, 299])  # far apart (gaps >> LOCAL_GAP): four runs of one row
    np.testing.assert_array_equal(ckpt.read_rows("emb", ids), arrays["emb"][ids])
    assert ckpt.io.bytes_read - header == 4 * row
    before = ckpt.io.bytes_read
    ckpt.read_rows("emb", np.array([10, 11, 12]))  # one contiguous run
    assert ckpt.io.bytes_read - before == 3 * row


def test_read_rows_many_plans_tensors_together(wide) -> None:
    path, arrays = wide
    ckpt = open_checkpoint(path)
    reqs = [("emb", np.array([5, 1, 5])), ("down", slice(0, 64, 9)), ("norm", slice(None)), ("emb", np.array([2]))]
    out = ckpt.read_rows_many(reqs)
    for (name, rows), got in zip(reqs, out, strict=True):
        np.testing.assert_array_equal(got, arrays[name][rows])
    # requests are planned together: rows 1 and 2, asked for separately, are one run; row 5 is another
    assert ckpt.io is not None
    reads, read = ckpt.io.reads, ckpt.io.bytes_read
    ckpt.read_rows_many([("emb", np.array([1])), ("emb", np.array([5])), ("emb", np.array([2]))])
    assert (ckpt.io.reads - reads, ckpt.io.bytes_read - read) == (2, 3 * 1024 * 4)


def test_whole_reads_match_and_big_files_stay_lazy(tmp_path: Path) -> None:
    m = tiny.make_llama(0, layers=2)
    folder = tiny.save_hf(m, tmp_path / "m", dtype="BF16", shards=2)
    ckpt = open_checkpoint(folder)
    assert ckpt.io is not None and ckpt.io.source == "local"
    opened = ckpt.io.bytes_read
    assert opened < sum(f.stat().st_size for f in ckpt.files) / 10  # opening reads headers only
    for name, w in m.tensors.items():
        np.testing.assert_array_equal(ckpt.read(name), tiny.from_bf16_bits(tiny.to_bf16_bits(w)))


def test_reads_longer_than_one_pread_fill_one_buffer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from audit.checkpoint import source

    monkeypatch.setattr(source, "_PREAD_MAX", 1000)  # as if the 12 kB below were many GiB
    data = os.urandom(12_345)
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    src = LocalFileSource(p)
    assert bytes(src.read(7, 12_000)) == data[7:12_007] and src.read(5, 100) == data[5:105]
    assert src.counter.bytes_read == 12_100
