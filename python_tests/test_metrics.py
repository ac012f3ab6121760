"""Metrics against scikit-learn, on random and on heavily tied scores."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve as sk_roc

from anrl_ext import metrics


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_auc_and_roc_match_sklearn(ties, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    y[:2] = [0, 1]
    s = rng.normal(y * 0.8, 1.0)
    if ties:
        s = np.round(s, 0)
    assert metrics.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    f, t, _ = metrics.roc_curve(s, y)
    fs, ts, _ = sk_roc(y, s, drop_intermediate=False)
    np.testing.assert_allclose(f, fs)
    np.testing.assert_allclose(t, ts)


@pytest.mark.parametrize("seed", range(5))
def test_eer_is_where_apcer_meets_bpcer(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    s = rng.normal(y * 1.5, 1.0)
    e, t = metrics.eer(s, y)
    a, b = metrics.apcer_bpcer(s, y, t)
    assert e == pytest.approx((a + b) / 2)
    # sklearn's ROC: EER where fpr ~ 1 - tpr
    fs, ts, _ = sk_roc(y, s)
    i = np.argmin(np.abs(fs - (1 - ts)))
    assert abs(e - (fs[i] + 1 - ts[i]) / 2) < 0.01


def test_hter_by_hand():
    s = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1])
    y = np.array([1, 1, 1, 0, 0, 0])
    h, a, b = metrics.hter(s, y, 0.5)
    assert (a, b) == (pytest.approx(1 / 3), pytest.approx(1 / 3)) and h == pytest.approx(1 / 3)
    assert metrics.tpr_at_fpr(s, y, 0.0) == pytest.approx(2 / 3)


def test_compute_metrics_video_average_and_protocols():
    s = np.array([0.9, 0.7, 0.2, 0.4, 0.6, 0.1])
    y = np.array([1, 1, 0, 0, 1, 0])
    vids = ["a", "a", "b", "b", "c", "d"]
    m = metrics.compute_metrics(s, y, video_ids=vids)
    assert set(m) >= {"auc", "eer", "hter", "threshold", "apcer", "bpcer"}
    assert m["auc"] == 1.0 and m["hter"] == 0.0
    rep = metrics.protocol_report(s, y, np.array([0.9, 0.1]), np.array([1, 0]))
    assert set(rep) == {"paper", "source"}
    with pytest.raises(ValueError, match="different labels"):
        metrics.video_average(s, y, ["a"] * 6)


def test_bad_input():
    with pytest.raises(ValueError, match="0 \\(spoof\\) or 1 \\(live\\)"):
        metrics.roc_auc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="both live"):
        metrics.roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match=r"need both live \(1\) and spoof \(0\) samples"):
        metrics.compute_metrics([], [])  # no samples at all (before: numpy's "zero-size array to reduction")
    with pytest.raises(ValueError, match="differ in length"):
        metrics.eer([0.1, 0.2, 0.3], [0, 1])


def test_attack_metrics_by_hand():
    """Threshold 0.5: prints 0.7 and 0.2 (one of two accepted), replays 0.6, 0.55, 0.1 (two of three), live 0.9,
    0.8, 0.3 (one of three rejected): ACER = (2/3 + 1/3) / 2, the replays being the worst."""
    s = [0.9, 0.8, 0.3, 0.7, 0.2, 0.6, 0.55, 0.1]
    y = [1, 1, 1, 0, 0, 0, 0, 0]
    kinds = [None, None, None, "print", "print", "replay", "replay", "replay"]
    r = metrics.attack_metrics(s, y, kinds, 0.5)
    assert r["apcer"] == {"print": 0.5, "replay": pytest.approx(2 / 3)} and r["count"] == {"print": 2, "replay": 3}
    assert r["bpcer"] == pytest.approx(1 / 3) and r["acer"] == pytest.approx(0.5) and r["worst"] == "replay"
    # live against each type alone: 5 of the 6 (live, print) pairs ordered, 7 of the 9 (live, replay) pairs
    assert r["auc"] == {"print": pytest.approx(5 / 6), "replay": pytest.approx(7 / 9)}


@pytest.mark.parametrize("seed", range(4))
def test_attack_metrics_add_up_to_the_overall_apcer(seed):
    """The types' APCERs weighted by their counts are the APCER over all attacks; one type alone is it, and its
    AUC the AUC; videos are scored as compute_metrics scores them."""
    rng = np.random.default_rng(seed)
    videos = np.repeat(np.arange(60), 3)
    y = (rng.uniform(size=60) < 0.4).astype(int)[videos]
    y[:3], y[3:6] = 1, 0
    s = rng.normal(y * 1.2, 1.0)
    kinds = np.array(["print", "replay", "mask"])[rng.integers(0, 3, 60)][videos]
    vids = [f"v{v}" for v in videos]
    m = metrics.compute_metrics(s, y, None, vids)
    r = metrics.attack_metrics(s, y, kinds, m["threshold"], vids)
    assert sum(r["count"].values()) == (1 - metrics.video_average(s, y, vids)[1]).sum()
    assert sum(r["apcer"][k] * r["count"][k] for k in r["apcer"]) / sum(r["count"].values()) \
        == pytest.approx(m["apcer"], abs=1e-12)
    assert r["bpcer"] == m["bpcer"] and r["acer"] >= m["hter"] - 1e-12
    assert r["apcer"][r["worst"]] == max(r["apcer"].values())
    one = metrics.attack_metrics(s, y, ["print"] * len(s), m["threshold"], vids)
    assert one["apcer"] == {"print": pytest.approx(m["apcer"], abs=1e-12)} and one["acer"] == pytest.approx(m["hter"])
    assert one["auc"] == {"print": pytest.approx(m["auc"], abs=1e-12)}


def test_attack_metrics_bad_input():
    s, y = [0.9, 0.1, 0.2, 0.3], [1, 0, 0, 0]
    with pytest.raises(ValueError, match="attacks has 3 entries for 4 scores"):
        metrics.attack_metrics(s, y, ["", "print", "print"], 0.5)
    with pytest.raises(ValueError, match=r"1 of the 3 spoof samples have no attack type \(the first: sample 3\)"):
        metrics.attack_metrics(s, y, ["live", "print", "print", ""], 0.5)
    with pytest.raises(ValueError, match="video 'b' has frames of different attack types"):
        metrics.attack_metrics(s, y, ["live", "print", "print", "replay"], 0.5, ["a", "b", "b", "b"])


def test_roc_plot_draws_each_attack_type_dashed_in_its_curves_colour(monkeypatch, tmp_path):
    saved = {}
    monkeypatch.setattr(metrics.checkpoint, "save_figure_atomic", lambda fig, path, dpi: saved.update(fig=fig))
    s, y = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.6]), np.array([1, 1, 1, 0, 0, 0])
    prints, replays = np.array([True, True, True, True, True, False]), np.array([True, True, True, False, False, True])
    metrics.plot_roc({"domain C": (s, y), "domain M": (s, y)}, str(tmp_path / "roc.png"),
                     by_type={"domain C": {"print": (s[prints], y[prints]), "replay": (s[replays], y[replays])}})
    lines = [line for line in saved["fig"].axes[0].get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label() for line in lines] == [
        f"domain C (AUC {metrics.roc_auc(s, y):.3f})", "domain C, live vs print (AUC 0.833)",
        "domain C, live vs replay (AUC 0.667)", f"domain M (AUC {metrics.roc_auc(s, y):.3f})"]
    assert [line.get_color() for line in lines] == ["C0", "C0", "C0", "C1"]
    assert [line.get_linestyle() for line in lines] == ["-", "--", "-.", "-"]
