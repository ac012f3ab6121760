"""benchmarks/loader_threads.py: the prepared dataset it writes, and its table on a tiny run."""
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import loader_threads  # noqa: E402

from anrl_ext.data.lists import ListDataset, read_prepared_domain  # noqa: E402


def test_writes_a_dataset_the_trainer_reads(tmp_path):
    loader_threads.write_prepared(tmp_path, size=24, videos=2, frames=3)
    records = read_prepared_domain(str(tmp_path), "O")
    assert sorted(r["label"] for r in records) == [0] * 6 + [1] * 6
    sample = ListDataset(records, ["O"], img_size=24, train=False)[0]
    assert sample["image"].shape == (6, 24, 24) and sample["depth"].shape == (1, 3, 3)


def test_table_has_a_row_per_thread_count(capsys):
    loader_threads.main(["--img-size", "32", "--batch-size", "2", "--width", "0.125", "--rounds", "1",
                         "--threads", "0", "2", "--videos", "2", "--frames", "2"])
    rows = [line for line in capsys.readouterr().out.splitlines() if re.match(r"\s+\d+ \|", line)]
    assert [int(r.split("|")[0]) for r in rows] == [0, 2]
    assert all(len(re.findall(r"\d+\.\d \(\d+\.\d\dx\)", r)) == 3 for r in rows)
    assert rows[0].count("(1.00x)") == 3  # the first count against itself
