"""IDC / ICS / depth losses against hand-computed values."""
import pytest
import torch

from anrl_ext.losses import DualCalibration, depth_loss


def make():
    dcc = DualCalibration(num_domains=3, dim=2, gamma=0.9)
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    dom = torch.tensor([0, 0, 1, 2])
    lab = torch.tensor([1, 0, 1, 0])
    return dcc, f, dom, lab


def test_centroid_momentum_update():
    dcc, f, dom, lab = make()
    dcc.update(f, dom, lab)  # first sighting: batch means
    torch.testing.assert_close(dcc.domain_centroids[0], torch.tensor([0.5, 0.5]))
    dcc.update(f, dom, lab)  # same batch again: unchanged
    torch.testing.assert_close(dcc.domain_centroids[0], torch.tensor([0.5, 0.5]))
    dcc.update(torch.zeros(1, 2), torch.tensor([0]), torch.tensor([1]))
    torch.testing.assert_close(dcc.domain_centroids[0], torch.tensor([0.45, 0.45]))
    torch.testing.assert_close(dcc.domain_centroids[1], torch.tensor([-1.0, 0.0]))  # absent: untouched


def test_idc_by_hand():
    dcc, f, dom, lab = make()
    dcc.update(f, dom, lab)
    C = dcc.domain_centroids
    d = lambda a, b: ((a - b) ** 2).sum(-1)  # noqa: E731
    expect = 0.0
    for k in range(3):
        fk = f[dom == k]
        d_sd = d(fk, C[k]).mean()
        d_dd = torch.stack([d(fk, C[j]).mean() for j in range(3) if j != k]).mean()
        expect += d_dd - d_sd
    torch.testing.assert_close(dcc.idc(f, dom), expect)
    # a batch where domain 1 and 2 are missing: only domain 0's term
    only0 = dcc.idc(f[:2], dom[:2])
    fk = f[:2]
    torch.testing.assert_close(only0, torch.stack([d(fk, C[1]).mean(), d(fk, C[2]).mean()]).mean() - d(fk, C[0]).mean())


def test_ics_by_hand_and_missing_class():
    dcc, f, dom, lab = make()
    dcc.update(f, dom, lab)
    cr, cf = dcc.class_centroids[1], dcc.class_centroids[0]
    torch.testing.assert_close(cr, torch.tensor([0.0, 0.0]))
    d = lambda a, b: ((a - b) ** 2).sum(-1)  # noqa: E731
    real, fake = f[lab == 1], f[lab == 0]
    expect = d(real, cr).mean() - d(real, cf).mean() - d(fake, cr).mean()
    torch.testing.assert_close(dcc.ics(f, lab), expect)
    only_fake = dcc.ics(fake, lab[lab == 0])
    torch.testing.assert_close(only_fake, -d(fake, cr).mean())


def test_losses_before_any_centroid_are_zero():
    dcc, f, dom, lab = make()
    assert dcc.idc(f, dom).item() == 0 and dcc.ics(f, lab).item() == 0


def test_depth_loss_zero_target_for_spoof():
    pred = torch.full((2, 1, 4, 4), 0.5)
    depth = torch.ones(2, 1, 4, 4)
    lab = torch.tensor([1, 0])
    assert depth_loss(pred, depth, lab).item() == pytest.approx(0.25)
