"""WeightAverage (--ema): the average against a float64 hand computation, buffers included."""
import pytest
import torch
from torch import nn

from anrl_ext import AFNM
from anrl_ext.averaging import WeightAverage, decay_at
from anrl_ext.distributed import sync_batch_stats


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), AFNM(8, backend="cpu"), nn.ReLU(), nn.Conv2d(8, 4, 1),
                         nn.BatchNorm2d(4))


def test_average_of_parameters_and_buffers_by_hand():
    net = small_net()
    average = WeightAverage(net, decay=0.6)
    expected = None
    for n in range(6):
        with torch.no_grad():  # a new network each time: every parameter and float buffer moves
            for t in net.state_dict().values():
                t.add_(torch.randn_like(t) if t.is_floating_point() else torch.ones_like(t))
        current = {k: v.double() if v.is_floating_point() else v.clone() for k, v in net.state_dict().items()}
        average.update_parameters(net)
        if expected is None:  # the first network is taken as it is
            expected = current
        else:
            kept = decay_at(0.6, n)
            expected = {k: kept * expected[k] + (1 - kept) * v if v.is_floating_point() else v
                        for k, v in current.items()}
    assert average.updates() == 6
    got = average.module.state_dict()
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        if v.is_floating_point():
            torch.testing.assert_close(got[k].double(), v, rtol=1e-6, atol=1e-6, msg=k)
        else:  # BN's batch counts are the network's, not an average of them
            assert torch.equal(got[k], v), k
    # the trained network is not touched
    assert all(p.requires_grad for p in net.parameters())
    assert not any(p.requires_grad for p in average.module.parameters())


def test_warmup_then_the_decay():
    assert decay_at(0.99, 1) == pytest.approx(2 / 11)
    assert decay_at(0.99, 1000) == 0.99
    assert [decay_at(0.5, n) for n in (1, 8, 9, 100)] == [2 / 11, 0.5, 0.5, 0.5]


def test_average_is_evaluated_as_it_is_and_never_synchronised():
    net = sync_batch_stats(small_net())
    average = WeightAverage(net, decay=0.9)
    assert net[1].gather_stats is not None and average.module[1].gather_stats is None
    assert not average.module.training
    x = torch.randn(2, 3, 9, 9)
    average.update_parameters(net)
    # evaluated with running statistics: a sample's output does not depend on the batch
    torch.testing.assert_close(average.module(x)[:1], average.module(x[:1]))


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_decay_out_of_range(decay):
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(small_net(), decay)
