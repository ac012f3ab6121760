"""python -m anrl_ext.gate_report: alpha per blend layer, domain and class, from a checkpoint."""
import json
import os

import pytest
import torch

from anrl_ext import checkpoint, config, gate_report, train
from anrl_ext.data import collate
from anrl_ext.data.build import eval_dataset
from anrl_ext.nn import BlendNorm2d


def saved_trainer(tmp_path, extra=(), perturb_gates=False):
    """A smoke-size Trainer written as a checkpoint; perturb_gates gives the AFNM gates random
    weights, so that alpha differs from 0.5 and from frame to frame."""
    trainer = train.Trainer(config.load(["--preset", "smoke", *extra]))
    if perturb_gates:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in trainer.gate_params:
                p.copy_(torch.randn(p.shape, generator=gen) * 2.0)
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_atomic(trainer.state_dict(), str(path))
    return trainer, path


def report(path, tmp_path, *extra):
    return gate_report.main(["--checkpoint", str(path), "--out", str(tmp_path / "gates.json"), *extra])


@pytest.mark.parametrize("norm, expected", [("ibn", lambda c: [0.0] * (c // 2) + [1.0] * (c - c // 2)),
                                            ("bn", lambda c: [1.0] * c), ("in", lambda c: [0.0] * c),
                                            ("half", lambda c: [0.5] * c)])
def test_fixed_blends_report_their_alpha(tmp_path, norm, expected):
    _, path = saved_trainer(tmp_path, ["--norm", norm])
    stats = report(path, tmp_path, "--domains", "OM")
    assert set(stats["domains"]) == {"O", "M"}
    kind = {"half": "INBNHalf"}.get(norm, norm.upper())
    assert len(stats["layers"]) == 10 and {layer["kind"] for layer in stats["layers"]} == {kind}
    for layer in stats["layers"]:
        want = expected(layer["channels"])
        for by_class in stats["domains"].values():
            assert set(by_class) == {"live", "spoof"}
            got = by_class["live"][layer["name"]]
            assert got["channel_means"] == pytest.approx(want, abs=1e-6)
            assert got["mean"] == pytest.approx(sum(want) / len(want), abs=1e-6) and got["frame_std"] < 1e-6


def test_afnm_starts_at_one_half(tmp_path):
    _, path = saved_trainer(tmp_path)
    stats = report(path, tmp_path)
    assert set(stats["domains"]) == set("OCIM") and stats["target"] == "M"
    means = [s["mean"] for by_class in stats["domains"].values() for layers in by_class.values()
             for s in layers.values()]
    assert len(means) == 4 * 2 * 10 and means == pytest.approx([0.5] * len(means), abs=1e-6)


def test_afnm_alpha_matches_the_layers_own_output(tmp_path, capsys):
    """The recorded means equal alpha that the layers return for their inputs (taken by a hook,
    independently of the recorder), per class, for the first and the last layer."""
    trainer, path = saved_trainer(tmp_path, perturb_gates=True)
    stats = report(path, tmp_path, "--domains", "CM")
    model = trainer.model.eval()
    names = ["extractor.stem.1", "extractor.blocks.2.2.1"]
    layers = dict(model.named_modules())
    inputs = {}
    hooks = [layers[n].register_forward_pre_hook(lambda m, a, n=n: inputs.__setitem__(n, a[0])) for n in names]
    data = collate([eval_dataset(trainer.cfg, ["M"])[i] for i in range(len(eval_dataset(trainer.cfg, ["M"])))])
    with torch.no_grad():
        model(data["image"])
        for h in hooks:
            h.remove()
        for n in names:
            _, alpha = layers[n](inputs[n], return_alpha=True)
            for label, cls in ((1, "live"), (0, "spoof")):
                a = alpha[data["label"] == label]
                got = stats["domains"]["M"][cls][n]
                assert got["frames"] == len(a)
                torch.testing.assert_close(torch.tensor(got["channel_means"]), a.mean(0), atol=1e-5, rtol=0)
                assert got["mean"] == pytest.approx(a.mean().item(), abs=1e-5)
    spread = [s["frame_std"] for s in stats["domains"]["M"]["live"].values()]
    assert max(spread) > 1e-3  # random gates: alpha moves from frame to frame
    out = capsys.readouterr().out
    assert all(layer["name"] in out for layer in stats["layers"]) and "M live" in out
    assert json.loads((tmp_path / "gates.json").read_text())["layers"] == stats["layers"]
    assert (tmp_path / "gates.png").stat().st_size > 10_000


def test_recorder_leaves_the_model_as_it_was():
    trainer = train.Trainer(config.load(["--preset", "smoke"]))
    x = torch.randn(2, 6, 32, 32)
    model = trainer.model.eval()
    with torch.no_grad():
        before = model(x)["logits"]
        with gate_report.recording_alpha(model) as records:
            during = model(x)["logits"]
        after = model(x)["logits"]
    assert torch.equal(before, during) and torch.equal(before, after)
    assert len(records["alpha"]) == 10 and all(r[0].shape == (2, m.num_features) for r, m in zip(
        records["alpha"].values(), (m for m in model.modules() if isinstance(m, BlendNorm2d))))
    assert set(records["hidden"]) == set(records["alpha"])  # the paper gate has a hidden layer
    assert not any("forward" in vars(m) for m in model.modules() if isinstance(m, BlendNorm2d))


def test_bad_arguments_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit, match="gate_report: error: checkpoint not found: .*nothing.pt"):
        gate_report.main(["--checkpoint", str(tmp_path / "nothing.pt")])
    _, path = saved_trainer(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        report(path, tmp_path, "--domains", "MX")
    assert exit_.value.code == 2  # argparse's usage error
    assert "--domains 'MX': unknown synthetic domain 'X'; choose from O, C, I, M" in capsys.readouterr().err


def test_a_checkpoint_folder_it_cannot_write_to_is_named_before_the_scoring(tmp_path, capsys, monkeypatch):
    """Without --out the report goes beside the checkpoint: a read-only folder there (os.access stands in,
    as the tests may run as root) is a usage error pointing to --out, not an OSError after the scoring."""
    _, path = saved_trainer(tmp_path)
    monkeypatch.setattr(gate_report, "gate_statistics", lambda *a, **k: pytest.fail("scored before the check"))
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: os.path.abspath(p) != str(tmp_path) and access(p, mode))
    with pytest.raises(SystemExit) as exit_:
        gate_report.main(["--checkpoint", str(path)])
    assert exit_.value.code == 2
    assert f"error: the default --out {tmp_path / 'gates.json'}: no permission to write in {tmp_path}" \
        in capsys.readouterr().err


def test_live_hidden_units_are_counted(tmp_path):
    """A gate whose hidden units are all 0 on every frame is reported dead; the count matches
    relu(S W^T) > 0 computed here from each layer's input."""
    trainer, path = saved_trainer(tmp_path, perturb_gates=True)
    stem = trainer.model.extractor.stem[1]
    with torch.no_grad():  # a dead gate: Z = relu(S 0^T) = 0 for every frame
        stem.gate.fc.zero_()
    checkpoint.save_atomic(trainer.state_dict(), str(path))
    stats = report(path, tmp_path, "--domains", "OI")
    layers = {layer["name"]: layer for layer in stats["layers"]}
    model = trainer.model.eval()
    inputs = {}
    hooks = [m.register_forward_pre_hook(lambda m, a, n=n: inputs.setdefault(n, []).append(a[0]))
             for n, m in model.named_modules() if isinstance(m, BlendNorm2d)]
    with torch.no_grad():
        for d in "OI":
            ds = eval_dataset(trainer.cfg, [d])
            model(collate([ds[i] for i in range(len(ds))])["image"])
    for h in hooks:
        h.remove()
    modules = dict(model.named_modules())
    for n, xs in inputs.items():
        s = torch.cat(xs).mean((2, 3))
        live = (torch.relu(s @ modules[n].gate.fc.T) > 0).any(0)
        assert layers[n]["hidden_units"] == len(live) and layers[n]["live_hidden_units"] == int(live.sum()), n
    assert layers["extractor.stem.1"]["live_hidden_units"] == 0  # dead, and so alpha stays 0.5 exactly
    assert stats["domains"]["O"]["live"]["extractor.stem.1"]["channel_means"] == pytest.approx([0.5] * stem.num_features)
    assert sum(layer["live_hidden_units"] for layer in stats["layers"]) > 0
