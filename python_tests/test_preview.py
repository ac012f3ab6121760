"""python -m anrl_ext.preview: the domains it finds, the videos it shows, the picture, its usage errors."""
import re

import cv2
import pytest

from anrl_ext import preview
from anrl_ext.data.build import domains_in, eval_dataset
from anrl_ext import config
from test_ssdg_layout import pseudo_depth_expected, write_ssdg


def test_pick_videos_spreads_over_the_class():
    records = [{"video": f"v{v:02d}", "label": v % 2} for v in range(20) for _ in range(3)]  # 3 frames each
    picked = preview.pick_videos(records, 1, 4)
    assert [records[i]["video"] for i in picked] == ["v01", "v07", "v13", "v19"]  # evenly, first and last included
    assert all(records[i - 1]["video"] != records[i]["video"] for i in picked if i)  # each video's first frame
    assert len(preview.pick_videos(records, 0, 50)) == 10  # every video where there are fewer


def test_synthetic_preview(tmp_path):
    out = tmp_path / "sub" / "preview.png"
    counts = preview.main(["--domains", "OM", "--videos", "2", "--img-size", "32", "--out", str(out)])
    assert list(counts) == ["O", "M"] and all(c["live"] == c["spoof"] == 24 for c in counts.values())
    cfg = config.load(["--img-size", "32", "--frames-per-video", "1"])
    for d, c in counts.items():
        labels = {r["video"]: r["label"] for r in eval_dataset(cfg, [d]).records}
        assert [labels[v] for v in c["shown"]] == [1, 1, 0, 0], c["shown"]  # two live, then two spoof
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 200


def test_ssdg_folder_preview(tmp_path):
    root = write_ssdg(tmp_path / "frames", tmp_path / "data_label", subjects=2)
    assert domains_in(str(root)) == ["O", "C", "I", "M"]
    with pseudo_depth_expected():
        counts = preview.preview(str(root), str(tmp_path / "p.pdf"), videos=1, img_size=16)
    assert {d: (c["live"], c["spoof"], len(c["shown"])) for d, c in counts.items()} == {
        d: (2, 2, 2) for d in "OCIM"}
    assert (tmp_path / "p.pdf").read_bytes().startswith(b"%PDF")


def test_usage_errors(tmp_path, capsys):
    for argv, message in ((["--out", str(tmp_path / "p.gif")], "--out .*p.gif: unknown format '.gif'"),
                          (["--domains", "OX"], "--domains 'OX': unknown synthetic domain 'X'"),
                          (["--videos", "0"], "--videos must be at least 1")):
        with pytest.raises(SystemExit) as stop:
            preview.main(argv + ([] if "--out" in argv else ["--out", str(tmp_path / "p.png")]))
        assert stop.value.code == 2 and re.search(message, capsys.readouterr().err), argv
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="--data .*empty: no domain found"):
        preview.main(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "p.png")])
    with pytest.raises(SystemExit, match="--data .*nowhere.: not 'synthetic' and not a folder"):
        preview.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p.png")])
    assert not (tmp_path / "p.png").exists()
