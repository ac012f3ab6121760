"""adaptive_norm's argument checks in one C++ call (anrl_ext._C.blend_arguments_ok).

The C++ predicate may only skip the Python checks where they would pass: it must never answer True for
arguments the Python checks reject (their error is what the user sees), nor for an empty input (which
takes the empty_blend path). It must answer True for the usual calls, or it saves nothing."""
import importlib
import itertools
import math
import random

import numpy as np
import pytest
import torch

import anrl_ext

adaptive_norm_module = importlib.import_module("anrl_ext.ops.adaptive_norm")
pytestmark = pytest.mark.skipif(adaptive_norm_module._arguments_ok is None, reason="needs anrl_ext._C")
N, C = 3, 4


class Subclass(torch.Tensor):
    pass


def inputs():
    """name -> x: valid ones and every way check_input / check_statistics_defined / the empty path differ."""
    return {
        "ok": torch.randn(N, C, 5, 6), "channels_last": torch.randn(N, C, 5, 6).to(memory_format=torch.channels_last),
        "float64": torch.randn(N, C, 2, 2, dtype=torch.float64), "bfloat16": torch.randn(N, C, 3, 3).bfloat16(),
        "one sample": torch.randn(1, C, 3, 3), "one pixel": torch.randn(N, C, 1, 1),
        "one value per channel": torch.randn(1, C, 1, 1), "two pixels one sample": torch.randn(1, C, 1, 2),
        "empty": torch.randn(0, C, 3, 3), "empty plane": torch.randn(N, C, 0, 3), "3-D": torch.randn(N, C, 5),
        "int": torch.ones(N, C, 3, 3, dtype=torch.int32), "meta": torch.randn(N, C, 3, 3, device="meta"),
        "subclass": torch.randn(N, C, 3, 3).as_subclass(Subclass), "list": [[1.0]],
        "requires grad": torch.randn(N, C, 3, 3, requires_grad=True),
        "parameter": torch.nn.Parameter(torch.randn(N, C, 3, 3)),
    }


def alphas():
    return {
        "float": 0.3, "one": 1.0, "int one": 1, "int zero": 0, "huge int": 10 ** 400, "bool": True, "nan": math.nan,
        "inf": math.inf, "numpy float32": np.float32(0.5), "numpy float64": np.float64(0.5), "string": "0.5",
        "None": None, "(N, C)": torch.rand(N, C), "(C,)": torch.rand(C), "()": torch.tensor(0.4),
        "(C + 1,)": torch.rand(C + 1), "(N, C + 1)": torch.rand(N, C + 1), "(1, C)": torch.rand(1, C),
        "(N, C, 1)": torch.rand(N, C, 1), "(N, C) on meta": torch.rand(N, C, device="meta"),
        "(C,) float64": torch.rand(C, dtype=torch.float64), "(C,) parameter": torch.nn.Parameter(torch.rand(C)),
        "(C,) subclass": torch.rand(C).as_subclass(Subclass),
    }


def vectors():
    """An affine weight or running buffer."""
    return {"None": None, "(C,)": torch.randn(C), "(C + 1,)": torch.randn(C + 1), "(1, C)": torch.randn(1, C),
            "()": torch.tensor(1.0), "meta": torch.randn(C, device="meta"), "parameter": torch.nn.Parameter(
                torch.randn(C)), "list": [1.0] * C, "subclass": torch.randn(C).as_subclass(Subclass)}


NUMBERS = {"0.1": 0.1, "0": 0, "1": 1, "1e-5": 1e-5, "-0.1": -0.1, "1.5": 1.5, "nan": math.nan, "inf": math.inf,
           "None": None, "True": True, "numpy": np.float64(0.1), "huge int": 10 ** 400, "string": "0.1"}
TRAINING = {"True": True, "False": False, "1": 1, "None": None}


def python_checks_pass(x, alpha, affines, running, training, momentum, eps) -> bool:
    """Whether adaptive_norm's Python checks let the call through and x has elements."""
    try:
        adaptive_norm_module.check_arguments(x, alpha, *affines, *running, training, momentum, eps)
    except Exception:  # noqa: BLE001 - any error the Python checks raise (or run into) rejects the call
        return False
    return x.numel() > 0


def predicate(x, alpha, affines, running, training, momentum, eps) -> bool:
    """The C++ call as adaptive_norm makes it."""
    return adaptive_norm_module._arguments_ok(x, alpha, *affines, *running, training, momentum, eps)


def test_never_accepts_what_the_python_checks_reject():
    """Every input, alpha, tensor argument, scalar and flag varied one at a time from a valid call, then
    3000 random mixes of them: wherever the predicate answers True, the Python checks pass."""
    xs, als, vecs = inputs(), alphas(), vectors()
    good = dict(x=xs["ok"], alpha=als["(N, C)"], affines=[vecs["(C,)"]] * 4, running=[torch.zeros(C), torch.ones(C)],
                training=True, momentum=0.1, eps=1e-5)
    variants = [dict(good, x=x) for x in xs.values()] + [dict(good, alpha=a) for a in als.values()]
    for slot in range(4):
        for v in vecs.values():
            affines = list(good["affines"])
            affines[slot] = v
            variants.append(dict(good, affines=affines))
    for mean, var in itertools.product(vecs.values(), repeat=2):
        variants.append(dict(good, running=[mean, var]))
    variants += [dict(good, momentum=m) for m in NUMBERS.values()] + [dict(good, eps=e) for e in NUMBERS.values()]
    variants += [dict(good, training=t, running=r) for t in TRAINING.values() for r in ([None, None],
                                                                                      good["running"])]
    rng = random.Random(0)
    for _ in range(3000):
        variants.append(dict(x=rng.choice(list(xs.values())), alpha=rng.choice(list(als.values())),
                             affines=[rng.choice(list(vecs.values())) for _ in range(4)],
                             running=[rng.choice(list(vecs.values())) for _ in range(2)],
                             training=rng.choice(list(TRAINING.values())), momentum=rng.choice(list(NUMBERS.values())),
                             eps=rng.choice(list(NUMBERS.values()))))
    accepted = 0
    for args in variants:
        if predicate(**args):
            accepted += 1
            assert python_checks_pass(**args), {k: (type(v).__name__, getattr(v, "shape", v)) for k, v in args.items()}
    assert accepted >= 50  # the mixes include enough valid calls for the check to mean something


@pytest.mark.parametrize("x_name", ["ok", "channels_last", "float64", "bfloat16", "one sample",
                                    "two pixels one sample", "requires grad", "parameter"])
@pytest.mark.parametrize("alpha_name", ["float", "one", "int zero", "(N, C)", "(C,)", "()", "(C,) float64",
                                        "(C,) parameter"])
def test_accepts_the_usual_calls(x_name, alpha_name):
    """Valid calls answer True (else the C++ call only adds time): every floating dtype and layout, alpha of
    each kind, with and without affine tensors and running statistics, training and eval."""
    x = inputs()[x_name]
    alpha = torch.rand(x.shape[0], C) if alpha_name == "(N, C)" else alphas()[alpha_name]
    affine = [torch.nn.Parameter(torch.randn(C)) for _ in range(4)]
    running = [torch.zeros(C), torch.ones(C)]
    for affines, run, training in [(affine, running, True), ([None] * 4, [None, None], True),
                                   (affine[:2] + [None] * 2, running, False)]:
        args = dict(x=x, alpha=alpha, affines=affines, running=run, training=training, momentum=0.1, eps=1e-5)
        assert python_checks_pass(**args)
        assert predicate(**args)


def test_single_values_follow_the_python_checks():
    """One pixel a plane is accepted only with alpha = 1 (instance normalisation needs more); one value a
    channel (N * H * W = 1) only in eval with running statistics (BN in training needs more): the predicate
    answers as the Python checks decide."""
    one_pixel = torch.randn(N, C, 1, 1)
    for alpha in (1.0, 1, 0.5, torch.ones(C)):
        args = dict(x=one_pixel, alpha=alpha, affines=[None] * 4, running=[None, None], training=True, momentum=0.1,
                    eps=1e-5)
        assert predicate(**args) == python_checks_pass(**args) == (not isinstance(alpha, torch.Tensor)
                                                                   and alpha == 1)
    x = torch.randn(1, C, 1, 1)
    for training, running in itertools.product([True, False], [[None, None], [torch.zeros(C), torch.ones(C)]]):
        args = dict(x=x, alpha=1.0, affines=[None] * 4, running=running, training=training, momentum=0.1, eps=0.0)
        assert predicate(**args) == python_checks_pass(**args) == (not training and running[0] is not None)


def test_wrapped_tensors_take_the_python_checks():
    """vmap's batched tensors and a torch.func.grad wrapper answer False: their checks stay in Python."""
    seen = []

    def f(x):
        seen.append(predicate(x, 0.5, [None] * 4, [None, None], True, 0.1, 1e-5))
        return x.sum()

    torch.vmap(f)(torch.randn(2, N, C, 3, 3))
    torch.func.grad(f)(torch.randn(N, C, 3, 3))
    assert seen == [False, False]


def test_adaptive_norm_skips_the_python_checks_only_when_the_predicate_passes(monkeypatch):
    """A valid call never reaches the Python checks; FAST_CHECKS = False, or an argument the predicate
    declines, runs them (the user's error comes from there)."""
    calls = []
    monkeypatch.setattr(adaptive_norm_module, "check_arguments", lambda *a: calls.append(a))
    x, alpha = torch.randn(N, C, 4, 4), torch.rand(N, C)
    anrl_ext.adaptive_norm(x, alpha, backend="cpu")
    assert calls == []
    anrl_ext.adaptive_norm(x, np.float64(0.5), backend="cpu")  # declined: not a float or an int
    assert len(calls) == 1
    monkeypatch.setattr(adaptive_norm_module, "FAST_CHECKS", False)
    anrl_ext.adaptive_norm(x, alpha, backend="cpu")
    assert len(calls) == 2


def test_errors_are_the_python_checks_errors():
    """With the C++ predicate in front, bad arguments still raise the Python checks' messages."""
    x = torch.randn(N, C, 4, 4)
    with pytest.raises(ValueError, match=r"alpha must be a float, \(C,\) = \(4,\) or \(N, C\) = \(3, 4\)"):
        anrl_ext.adaptive_norm(x, torch.rand(C + 1), backend="cpu")
    with pytest.raises(ValueError, match="bn_weight has 5 entries, expected C = 4"):
        anrl_ext.adaptive_norm(x, 0.5, torch.ones(C + 1), backend="cpu")
    with pytest.raises(ValueError, match="momentum must be in"):
        anrl_ext.adaptive_norm(x, 0.5, momentum=1.5, backend="cpu")
    with pytest.raises(ValueError, match="running_mean and running_var go together"):
        anrl_ext.adaptive_norm(x, 0.5, running_mean=torch.zeros(C), backend="cpu")
    assert anrl_ext.adaptive_norm(torch.randn(0, C, 4, 4), 0.5, backend="cpu").shape == (0, C, 4, 4)
