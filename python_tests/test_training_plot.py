"""losses.png: the curves drawn are log.csv's columns and their moving averages; the panels follow what was logged."""
import math

import cv2
import numpy as np
import pytest

from anrl_ext import checkpoint, training_plot


def write_log(path, rows, meta=True):
    header = "iter,cls,dep,trn,val,idc,ics,seconds\n"
    lines = []
    for it, (cls, dep) in enumerate(rows, 1):
        extra = f"{cls + 1:.4f},{dep + 1:.4f},0.1,-0.1" if meta else ",,,"
        lines.append(f"{it},{cls:.4f},{dep:.4f},{extra},{it * 0.5:.2f}\n")
    path.write_text(header + "".join(lines))


@pytest.fixture
def drawn(monkeypatch):
    """The figures plot_training saves, kept for inspection (and still written)."""
    figures = []
    save = checkpoint.save_figure_atomic

    def keep(fig, path, **kwargs):
        figures.append(fig)
        save(fig, path, **kwargs)

    monkeypatch.setattr(checkpoint, "save_figure_atomic", keep)
    return figures


def test_moving_average_is_the_trailing_mean_skipping_nan():
    values = np.array([1.0, 3.0, math.nan, 5.0, 7.0])
    np.testing.assert_allclose(training_plot.moving_average(values, 2), [1.0, 2.0, 3.0, 5.0, 6.0])
    np.testing.assert_allclose(training_plot.moving_average(values, 1)[[0, 1, 3, 4]], [1.0, 3.0, 5.0, 7.0])
    assert math.isnan(training_plot.moving_average(values, 1)[2])


def test_moving_average_of_a_long_log_matches_each_window():
    rng = np.random.default_rng(1)
    values = rng.random(500) * 10
    values[rng.random(500) < 0.1] = math.nan  # steps that did not compute the loss
    values[100:160] = math.nan  # a window with none at all
    got = training_plot.moving_average(values, 25)
    for i in range(len(values)):
        part = values[max(0, i - 24): i + 1]
        part = part[np.isfinite(part)]
        if len(part):
            assert got[i] == pytest.approx(part.mean(), rel=1e-9), i
        else:
            assert math.isnan(got[i]), i


def test_panels_follow_the_log_and_lines_are_its_columns(tmp_path, drawn):
    rng = np.random.default_rng(0)
    rows = [(float(a), float(b)) for a, b in rng.random((60, 2))]
    write_log(tmp_path / "log.csv", rows)
    evaluations = [{"iteration": it, "metrics": {"source_heldout": {"hter": h}, "paper": {"hter": t}}}
                   for it, h, t in ((20, 0.3, 0.4), (40, 0.1, 0.35), (60, 0.2, 0.3))]
    panels = training_plot.plot_training(str(tmp_path / "log.csv"), str(tmp_path / "losses.png"), evaluations,
                                         selected=40)
    assert panels == ["cls", "dep", "trn", "val", "idc", "ics", "evaluations"]
    image = cv2.imread(str(tmp_path / "losses.png"))
    assert image is not None and image.shape == (900, 1200, 3)  # 3 x 3 panels of 4 x 3 inches at 100 dpi
    axes = drawn[0].axes
    raw, mean = axes[0].lines
    cls = np.array([r[0] for r in rows])
    np.testing.assert_allclose(raw.get_ydata(), cls, atol=1e-4)  # written with 4 decimals
    np.testing.assert_allclose(mean.get_ydata(), training_plot.moving_average(cls, 3), atol=1e-4)  # 60 // 20
    np.testing.assert_allclose(axes[1].lines[0].get_ydata(), [r[1] for r in rows], atol=1e-4)
    heldout, target, chosen = axes[6].lines
    assert list(heldout.get_xdata()) == [20, 40, 60] and list(heldout.get_ydata()) == pytest.approx([30, 10, 20])
    assert list(target.get_ydata()) == pytest.approx([40, 35, 30]) and list(chosen.get_xdata()) == [40, 40]
    assert [ax.axison for ax in axes[7:]] == [False, False]  # the empty slots of the grid


def test_first_order_runs_plot_only_their_losses(tmp_path, drawn):
    write_log(tmp_path / "log.csv", [(0.7, 0.2), (0.6, 0.1)], meta=False)
    assert training_plot.plot_training(str(tmp_path / "log.csv"), str(tmp_path / "losses.png")) == ["cls", "dep"]
    assert len(drawn[0].axes[0].lines) == 1  # under 40 iterations: the raw curve alone
    (tmp_path / "empty.csv").write_text("iter,cls,dep,seconds\n")
    with pytest.raises(ValueError, match="empty.csv: no loss was logged"):
        training_plot.plot_training(str(tmp_path / "empty.csv"), str(tmp_path / "none.png"))
    assert not (tmp_path / "none.png").exists()
