"""`python -m anrl_ext.train`: ANRL training (Algorithm 1) and leave-one-domain-out evaluation.

With no arguments: the built-in synthetic benchmark, protocol OCI-M, on the
CPU, in a few minutes; writes logs, checkpoints, metrics.json and roc.png
under --out.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, replace

import numpy as np
import torch
from tqdm import tqdm

from . import checkpoint, cli, config, distributed, provenance, selection, stopping
from .averaging import WeightAverage
from .data import BalancedDomainSampler
from .data.attacks import video_attacks
from .data.build import build_datasets, fingerprint, split_summary
from .data.prefetch import Prefetcher, in_batches, random_state, set_random_state
from .errors import OptionError
from .losses import DualCalibration, anrl_losses
from .meta import call_with, meta_gradient
from .metrics import add_attack_metrics, compute_metrics, describe_attacks, plot_roc, protocol_report
from .model import ANRLNet
from .nn.blend_norm import NORMS
from .ops.backends import available_backends, resolve_backend
from .training_plot import LOSS_TITLES, plot_training


def cat_batches(batches):
    out = {k: torch.cat([b[k] for b in batches]) for k in ("image", "depth", "label", "domain")}
    out["video"] = sum((b["video"] for b in batches), [])
    return out


def to_device(batch, device):
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}


class TrainingStopped(RuntimeError):
    """A run that ended early, with a message saying why and which checkpoint it leaves."""


class TrainingDiverged(TrainingStopped):
    """A training loss that is no longer finite: the run stops there, not at the end on NaN weights."""


def non_finite(logs: dict) -> str:
    """The losses of an iteration's logs that are nan or inf, as "name value" text ('' if none)."""
    return ", ".join(f"{k} {v}" for k, v in logs.items() if not math.isfinite(v))


def float_outputs(out):
    """The network's outputs in float32 (bfloat16 under --amp): losses and scores are computed in float32."""
    return {k: v.float() for k, v in out.items()}


def cpu_has_bfloat16_instructions() -> bool:
    """Whether this CPU has AVX512-BF16 or AMX, with which --amp trains faster than float32 (torch's own
    probes; a torch without them counts as no)."""
    probes = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(probe() for probe in probes if probe is not None)


class Trainer:
    """ANRL's network, optimisers and Algorithm 1's iteration. Without `with_data` (scoring a
    checkpoint: evaluate, gate_report) no dataset is built, so only the domains scored need exist."""

    def __init__(self, cfg: config.Config, with_data: bool = True):
        self.cfg = cfg.validate()
        torch.manual_seed(cfg.seed)  # same initial weights on every process
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda":  # else the first CUDA call fails, after the data is built
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if (self.device.index or 0) >= count:
                have = ("no CUDA device is available (--device cpu runs on the CPU; --preset paper asks for cuda)"
                        if count == 0 else f"this machine has {count} CUDA device"
                        + (" (cuda:0)" if count == 1 else f"s (cuda:0 to cuda:{count - 1})"))
                raise OptionError(f"--device {cfg.device}: {have}")
        try:  # now, not at the first forward pass after building the data
            backend = resolve_backend(cfg.backend, self.device)
        except ValueError as e:
            raise OptionError(f"--backend {cfg.backend} with --device {cfg.device}: {e}") from None
        self.rank, self.world_size = distributed.init_from_env(self.device)
        if cfg.sync_stats and self.world_size > 1 and backend == "reference" and NORMS[cfg.norm].uses_bn:
            # every process raises it here, before any collective (run() leaves the process group)
            raise OptionError(f"--sync-stats with --backend {cfg.backend}: synchronised BN statistics need a fused "
                              f"backend ({', '.join(b for b in available_backends(self.device) if b != 'reference')})"
                              ", or leave out --sync-stats")
        if self.device.type == "cuda" and self.world_size > 1:
            self.device = torch.device("cuda", torch.cuda.current_device())
        sources = cfg.domains()[0]
        self.train_set = self.source_val = self.target_set = self.sampler = self.target_attacks = None
        if with_data:
            self.train_set, self.source_val, self.target_set = build_datasets(cfg)
            self.target_attacks = video_attacks(self.target_set)  # None where the data names no attack types
            self.train_set.augment_rng = np.random.default_rng(cfg.seed + 1000 * self.rank)
            self.sampler = BalancedDomainSampler(self.train_set, cfg.batch_size, seed=cfg.seed + 1000 * self.rank)
        self.prefetcher = None  # --loader-threads: started by the first step, after any load_state_dict
        if cfg.amp and self.device.type == "cpu" and not cpu_has_bfloat16_instructions():
            warnings.warn("--amp on the CPU: bfloat16 autocast is fast only on CPUs with bfloat16 instructions "
                          "(AVX512-BF16, AMX), which this one lacks; an iteration is many times slower than in "
                          "float32 (docs/performance.md, 'One training iteration')", stacklevel=2)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = ANRLNet(cfg.width, cfg.norm, cfg.gate, cfg.backend, cfg.reduction).to(self.device,
                                                                          memory_format=self.memory_format)
        if cfg.sync_stats:
            if self.world_size == 1:
                warnings.warn("--sync-stats in one process: nothing to synchronise, the layers use this "
                              "process's batch (run under torchrun for statistics over processes)", stacklevel=2)
            # the sampler gives every process the same batch size: no row counts to exchange
            distributed.sync_batch_stats(self.model, same_rows=True)
        self.gate_names = self.model.gate_parameter_names()
        gate = set(self.gate_names)
        named = dict(self.model.named_parameters())
        self.base_params = [p for n, p in named.items() if n not in gate]
        self.gate_params = [named[n] for n in self.gate_names]
        self.opt_base = torch.optim.Adam(self.base_params, lr=cfg.lr)
        self.opt_gate = torch.optim.Adam(self.gate_params, lr=cfg.meta_lr) if self.gate_params else None
        dim = self.model.classifier.embed.out_features
        self.dcc = DualCalibration(len(sources), dim, cfg.gamma).to(self.device)
        self.rng = np.random.default_rng(cfg.seed + 1)
        self.iteration = 0
        self.use_meta = cfg.meta and bool(self.gate_params) and len(sources) >= 2
        if cfg.meta and self.gate_params and not self.use_meta:
            warnings.warn(f"one source domain ({''.join(sources)}): the meta step splits the sources into "
                          "meta-train and meta-test, which takes two or more; this run trains as with --no-meta "
                          "(the AFNM gates take the normal step; IDC and ICS are off)", stacklevel=2)
        # --ema: the average is what evaluate() scores and best.pt keeps; training never reads it.
        # Only rank 0 evaluates and writes, so the other processes keep none (no copy, no update).
        self.average = WeightAverage(self.model, cfg.ema) if cfg.ema and self.rank == 0 else None

    @property
    def evaluated(self) -> torch.nn.Module:
        """The network evaluate() scores: the weight average with --ema, else the trained network."""
        return self.average.module if self.average is not None else self.model

    # -- state ---------------------------------------------------------------
    def state_dict(self):
        return {"model": self.model.state_dict(), "opt_base": self.opt_base.state_dict(),
                "opt_gate": self.opt_gate.state_dict() if self.opt_gate else None, "dcc": self.dcc.state_dict(),
                **(self.prefetcher.state() if self.prefetcher else random_state(self.sampler)),
                "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "iteration": self.iteration, "config": asdict(self.cfg), **self._average_state()}

    def _average_state(self):
        if self.average is None:
            return {}
        return {"ema_model": self.average.module.state_dict(), "ema_updates": self.average.updates()}

    def load_state_dict(self, s, path: str = "the checkpoint"):
        """Go on from a state_dict() read from `path` (named in the InputError if its network does not fit)."""
        checkpoint.load_weights(self.model, s["model"], path)
        self.opt_base.load_state_dict(s["opt_base"])
        if self.opt_gate and s["opt_gate"]:
            self.opt_gate.load_state_dict(s["opt_gate"])
        self.dcc.load_state_dict(s["dcc"])
        self.close()  # a background loader has drawn from the generators set here
        set_random_state(self.sampler, s)  # the checkpoint holds random_state()'s entries
        self.rng.bit_generator.state = s["rng"]
        torch.set_rng_state(s["torch_rng"])
        self.iteration = s["iteration"]
        if self.average is not None:  # config.check_resumable: a run with --ema resumes with it
            checkpoint.load_weights(self.average.module, s["ema_model"], path)
            self.average.set_updates(s["ema_updates"])

    def forward(self, images, params=None, model=None):
        """`model` (default: the trained network) on `images`, with `params` overriding its own as
        fast weights, in the model's memory format, under bfloat16 autocast with --amp; outputs in
        float32 either way."""
        images = images.contiguous(memory_format=self.memory_format)  # no copy when already so
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp):
            out = call_with(self.model if model is None else model, params or {}, images)
        return float_outputs(out)

    def close(self) -> None:
        """Stop the background loader of --loader-threads, if one runs, rewinding what it drew ahead (the next
        step starts it again, with the batches it would have given)."""
        if self.prefetcher is not None:
            self.prefetcher.close()
            self.prefetcher = None

    def next_batches(self) -> list:
        """This iteration's batches (one per source domain, on the CPU): loaded now, or with --loader-threads
        while the last iteration trained."""
        if not self.cfg.loader_threads:
            return self.sampler.sample()
        if self.prefetcher is None:
            self.prefetcher = Prefetcher(self.sampler, self.cfg.loader_threads)
        return self.prefetcher.next()

    # -- one iteration of Algorithm 1 ----------------------------------------
    def step(self):
        if self.sampler is None:
            raise RuntimeError("this Trainer was built with with_data=False, to score a checkpoint; it cannot train")
        cfg = self.cfg
        self.model.train()
        batches = [to_device(b, self.device) for b in self.next_batches()]
        every = cat_batches(batches)
        # 1. normal step on theta_base with L_cls + L_dep over all source domains
        # (without meta-learning the gates are plain parameters and take this step too)
        plain = [(self.opt_base, self.base_params)]
        if self.opt_gate and not self.use_meta:
            plain.append((self.opt_gate, self.gate_params))
        out = self.forward(every["image"])
        terms = anrl_losses(out, every, self.dcc, cfg.lambda_idc, cfg.lambda_ics, with_dcc=False)
        for opt, _ in plain:
            opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        for opt, params in plain:
            distributed.average_gradients(params)
            opt.step()
        self.dcc.update(*self.gathered(out["features"].detach(), every["domain"], every["label"]))
        logs = {"cls": terms["cls"].item(), "dep": terms["dep"].item()}
        # 2. meta-train / meta-test split and the (second-order) update of theta_F
        if self.use_meta:
            order = self.rng.permutation(len(batches))
            b_val, b_trn = batches[order[0]], cat_batches([batches[i] for i in order[1:]])
            parts = {}

            def loss_on(batch, key):
                def fn(params):
                    t = anrl_losses(self.forward(batch["image"], params), batch, self.dcc,
                                    cfg.lambda_idc, cfg.lambda_ics)
                    parts[key] = t
                    return t["total"]
                return fn

            grads = meta_gradient(self.model, self.gate_names, loss_on(b_trn, "trn"), loss_on(b_val, "val"),
                                  cfg.inner_lr, cfg.first_order)
            self.opt_gate.zero_grad(set_to_none=True)
            for p, g in zip(self.gate_params, grads):
                p.grad = g.detach()
            distributed.average_gradients(self.gate_params)
            self.opt_gate.step()
            logs.update(trn=parts["trn"]["total"].item(), val=parts["val"]["total"].item(),
                        idc=parts["trn"]["idc"].item(), ics=parts["trn"]["ics"].item())
        if self.average is not None:
            self.average.update_parameters(self.model)
        self.iteration += 1
        return logs

    def gathered(self, *tensors):
        """Concatenate tensors across processes (centroids stay identical on every process)."""
        if self.world_size == 1:
            return tensors
        with torch.no_grad():
            return tuple(distributed.all_gather_cat(t, same_rows=True) for t in tensors)

    def replicas_in_sync(self) -> bool:
        """Whether every process holds the same parameters (rank 0's)."""
        if self.world_size == 1:
            return True
        flat = torch.cat([p.detach().flatten() for p in self.model.parameters()])
        ref = flat.clone()
        torch.distributed.broadcast(ref, 0)
        diff = (flat - ref).abs().max().reshape(1)
        torch.distributed.all_reduce(diff, op=torch.distributed.ReduceOp.MAX)
        return bool(diff.item() == 0)

    # -- evaluation -----------------------------------------------------------
    @torch.no_grad()
    def scores(self, dataset, batch=64, desc: str = "scoring", model=None):
        """(live scores, labels, video ids) of every frame of `dataset` by `model` (default: the
        evaluated network) in eval mode; a progress bar named `desc` on a terminal."""
        model = self.evaluated if model is None else model
        model.eval()
        s, y, v = [], [], []
        with tqdm(total=len(dataset), desc=desc, unit="frame", leave=False, dynamic_ncols=True, file=sys.stdout,
                  disable=None) as bar:
            for b in in_batches(dataset, batch, self.cfg.loader_threads):
                b = to_device(b, self.device)
                s.append(torch.softmax(self.forward(b["image"], model=model)["logits"], 1)[:, 1].cpu())
                y.append(b["label"].cpu())
                v += b["video"]
                bar.update(len(b["video"]))
        return torch.cat(s).numpy(), torch.cat(y).numpy(), v

    def evaluate(self, model=None):
        """Both protocols on the target domain, plus 'source_heldout': unseen subjects of the sources;
        of `model`, by default the evaluated network (`evaluated`)."""
        ts, tl, tv = self.scores(self.target_set, desc="scoring the target", model=model)
        ss, sl, sv = self.scores(self.source_val, desc="scoring held-out sources", model=model)
        report = protocol_report(ts, tl, ss, sl, tv, sv)
        for proto in ("paper", "source"):  # APCER per attack type and ACER, where the types are known
            add_attack_metrics(report[proto], ts, tl, tv, self.target_attacks)
        report["source_heldout"] = compute_metrics(ss, sl, None, sv)
        return report, (ts, tl)


def trainer_from_checkpoint(path: str, data: str = None, device: str = None, loader_threads: int = None):
    """(Trainer with a checkpoint's config and the network it delivers, the checkpoint), for
    scoring: it builds no dataset. `data`, `device` and `loader_threads` replace the config's when
    given; without `device`, a GPU run is scored on the CPU of a machine that has no GPU."""
    state = checkpoint.load_run(path)
    cfg = config.from_checkpoint(state["config"], path, data or None)
    if loader_threads is not None:
        cfg = replace(cfg, loader_threads=loader_threads).validate()  # a ValueError naming it below 0
    if device:
        cfg.device = device
    elif cfg.device != "cpu" and not torch.cuda.is_available():
        warnings.warn(f"{path} was trained on {cfg.device}; this machine has no CUDA device: scoring on the CPU",
                      stacklevel=2)
        cfg.device = "cpu"
    device_here = cfg.device == "cpu" or torch.cuda.is_available()  # if not, Trainer says so
    if device_here and cfg.backend not in ("auto", *available_backends(cfg.device)):
        # the backends compute the same function, so any will do
        warnings.warn(f"{path} was trained with --backend {cfg.backend}, which cannot run on {cfg.device} here; "
                      "scoring with --backend auto (the same function)", stacklevel=2)
        cfg.backend = "auto"
    weights = checkpoint.delivered_weights(state, path)  # refused before a network is built if not finite
    # the delivered weights go into the trainer's own network, so it keeps no average of its own
    trainer = Trainer(replace(cfg, ema=0.0), with_data=False)
    checkpoint.load_weights(trainer.model, weights, path)
    return trainer, state


def run(cfg: config.Config) -> dict:
    """Train, evaluate on the held-out domain and write the outputs under `cfg.out`.

    Under torchrun every process calls this; only rank 0 writes. The process group
    joined here is destroyed on the way out, error or not."""
    trainer = None
    try:
        trainer = Trainer(cfg)
        return _run(trainer, cfg)
    finally:
        if trainer is not None:
            trainer.close()
        distributed.shutdown()


def _run(trainer: Trainer, cfg: config.Config) -> dict:
    resumed, heldout = None, fingerprint(trainer.source_val)
    if cfg.resume:
        resumed = checkpoint.load_run(cfg.resume, map_location=trainer.device)
        # every rank checks, so that none is left waiting in a collective when it fails
        selection.check_same_heldout(resumed.get("selection"), heldout, cfg.resume)
        trainer.load_state_dict(resumed, cfg.resume)
        if trainer.rank != 0:  # the checkpoint holds rank 0's sampler; reseed the others
            trainer.sampler.rng = np.random.default_rng([cfg.seed + 1000 * trainer.rank, trainer.iteration])
    if trainer.rank != 0:
        return _run_worker(trainer)
    ckpt_path = os.path.join(cfg.out, "checkpoint.pt")
    saved, started = [], trainer.iteration  # the iterations this run wrote checkpoint.pt at; where it began
    try:
        return _run_and_write(trainer, cfg, resumed, heldout, ckpt_path, saved)
    except OSError as e:  # a disk that filled, a permission or file system lost mid-run: what is left, and how on
        if saved and saved[-1] == cfg.iters:
            what_now = (f"{ckpt_path} holds the trained network (iteration {cfg.iters}); once that is mended, "
                        f"python -m anrl_ext.evaluate --checkpoint {ckpt_path} scores it")
        elif saved:
            what_now = (f"{last_saved(ckpt_path, saved)}; once that is mended, go on with: "
                        f"python -m anrl_ext.train --resume {ckpt_path}")
        else:
            what_now = last_saved(ckpt_path, saved) + (f"; {cfg.resume}, which it resumed from, is as it was"
                                                       if cfg.resume else "")
        when = f"after iteration {trainer.iteration}" if trainer.iteration > started else "before its first iteration"
        raise TrainingStopped(f"{e} ({when}). {what_now}") from e


def last_saved(ckpt_path: str, saved: list) -> str:
    """Which checkpoint a run that stops early leaves, given the iterations it saved `ckpt_path` at."""
    return f"{ckpt_path} holds iteration {saved[-1]}, the last saved" if saved else "This run saved no checkpoint"


def _run_and_write(trainer: Trainer, cfg: config.Config, resumed, heldout, ckpt_path: str, saved: list) -> dict:
    """Rank 0's run: train, evaluate and write every output, appending each checkpoint's iteration to `saved`."""
    os.makedirs(cfg.out, exist_ok=True)
    config.dump(cfg, os.path.join(cfg.out, "config.yaml"))
    sources, target = cfg.domains()
    split = split_summary(trainer.train_set, trainer.source_val, trainer.target_set)
    print(f"data {cfg.data}: sources {''.join(sources)}, {split['train']['videos']} training videos "
          f"({split['train']['subjects']} subjects), {split['heldout']['videos']} held out "
          f"({split['heldout']['subjects']} subjects); target {target}, {split['target']['videos']} videos",
          flush=True)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(os.path.join(cfg.out, "tensorboard"))
    bar = tqdm(total=cfg.iters, initial=trainer.iteration, desc=f"ANRL {''.join(sources)}->{target}",
               dynamic_ncols=True, file=sys.stdout, disable=None)
    # Closed on every way out: a Python caller of run() whose run stops on an error keeps no writer thread
    # and no open bar.
    with contextlib.closing(writer), contextlib.closing(bar):
        log_path = os.path.join(cfg.out, "log.csv")
        keys = ["iter", *LOSS_TITLES, "seconds"]  # the losses a step may log, in the columns losses.png reads
        if cfg.resume and os.path.exists(log_path):
            keep_log_until(log_path, trainer.iteration)  # iterations after the checkpoint are run again
        else:  # appended row by row below; an error on a full disk names no file: name it
            with checkpoint.os_errors_naming(log_path), open(log_path, "w", newline="") as fh:
                csv.writer(fh).writerow(keys)
        # --eval-every: best.pt holds the network of the best evaluation on held-out source subjects
        best = selection.BestOnSourceHeldout(cfg.out, asdict(cfg), resumed.get("selection") if resumed else None,
                                             heldout)

        def stop_diverged(it: int, what: str) -> TrainingDiverged:
            return TrainingDiverged(f"the training diverged at iteration {it}: {what}; a smaller --lr, --meta-lr or "
                                    f"--inner-lr may help. {last_saved(ckpt_path, saved)}")

        def check_weights():
            """Before a checkpoint or an evaluation: an update can make the weights nan after finite losses, and
            a checkpoint of them would replace the last good one."""
            broken = checkpoint.non_finite_entries(trainer.model.state_dict())  # once nan, an update keeps them so
            if broken:
                raise stop_diverged(trainer.iteration, f"the network's weights are not finite ({broken}), though its "
                                                       f"losses were finite")

        def save_checkpoint():
            check_weights()
            checkpoint.save_atomic({**trainer.state_dict(), "selection": best.state_dict()}, ckpt_path)
            saved.append(trainer.iteration)

        t0 = time.time()
        # One process only: under torchrun every rank must stop after the same iteration.
        with stopping.between_steps(enabled=trainer.world_size == 1) as stop:
            while trainer.iteration < cfg.iters and not stop.signum:
                logs = trainer.step()
                it = trainer.iteration
                with checkpoint.os_errors_naming(log_path), open(log_path, "a", newline="") as fh:
                    csv.writer(fh).writerow([it] + [f"{logs[k]:.6f}" if k in logs else "" for k in keys[1:-1]]
                                            + [f"{time.time() - t0:.2f}"])
                for k, v in logs.items():
                    writer.add_scalar(f"loss/{k}", v, it)
                diverged = non_finite(logs)
                if diverged:  # its weights are no use: no checkpoint, no evaluation
                    raise stop_diverged(it, f"{diverged} (log.csv has every loss)")
                bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()})
                bar.update(1)
                if bar.disable and (it % 50 == 0 or it == cfg.iters):  # no terminal: plain progress lines
                    print(f"iter {it}/{cfg.iters} " + " ".join(f"{k} {v:.3f}" for k, v in logs.items()), flush=True)
                if cfg.eval_every and it % cfg.eval_every == 0 and it < cfg.iters and not stop.signum:
                    check_weights()
                    report, _ = trainer.evaluate()
                    best.offer(it, report, trainer.evaluated)
                    for proto, m in report.items():
                        for key in ("auc", "hter", "acer"):  # acer: where the target's attack types are known
                            if key in m:
                                writer.add_scalar(f"{proto}/{key}", m[key], it)
                if cfg.ckpt_every and it % cfg.ckpt_every == 0:  # after the evaluation: it holds its pick
                    save_checkpoint()
            bar.close()
            save_checkpoint()
        if stop.signum:
            print(f"stopped by {stop.name} after iteration {trainer.iteration}/{cfg.iters}; wrote {ckpt_path}\n"
                  f"go on with: python -m anrl_ext.train --resume {ckpt_path}", flush=True)
            return {"stopped_by": stop.name, "signum": stop.signum, "iterations": trainer.iteration,
                    "checkpoint": ckpt_path}
        in_sync = trainer.replicas_in_sync()
        report, (ts, tl) = trainer.evaluate()
        if cfg.eval_every:
            best.offer(trainer.iteration, report, trainer.evaluated)
            save_checkpoint()  # with the final evaluation's pick
        plot_roc({f"target {target}": (ts, tl)}, os.path.join(cfg.out, "roc.png"),
                 title=f"{''.join(sources)} -> {target}, norm={cfg.norm} (frame-level)")
        plot_training(log_path, os.path.join(cfg.out, "losses.png"), best.evaluations,
                      best.record["iteration"] if best.summary() else None,
                      title=f"{''.join(sources)} -> {target}, norm={cfg.norm}, {trainer.iteration} iterations")
        result = {"task": f"{''.join(sources)}-{target}", "iterations": trainer.iteration,
                  "world_size": trainer.world_size, "replicas_in_sync": in_sync, "data_split": split,
                  "train_seconds": round(time.time() - t0, 1), "metrics": report, "config": asdict(cfg),
                  "code": provenance.code_version()}
        if trainer.average is not None:  # the last weights too: --ema changes nothing else in the run
            result["metrics_unaveraged"], _ = trainer.evaluate(trainer.model)
        if best.summary():
            result["selected"], result["evaluations"] = best.summary(), best.evaluations
        checkpoint.write_text_atomic(os.path.join(cfg.out, "metrics.json"), json.dumps(result, indent=2))
    for proto in ("paper", "source"):
        m = report[proto]
        print(f"[{proto:>6} protocol] target {target}: HTER {100 * m['hter']:.2f}%  AUC {100 * m['auc']:.2f}%  "
              f"(APCER {100 * m['apcer']:.2f}%, BPCER {100 * m['bpcer']:.2f}%, threshold {m['threshold']:.3f})")
        if "attacks" in m:
            print(f"{'':18}{describe_attacks(m['attacks'])}")
    if "metrics_unaveraged" in result:
        m = result["metrics_unaveraged"]["paper"]
        print(f"[unaveraged] target {target}: HTER {100 * m['hter']:.2f}%  AUC {100 * m['auc']:.2f}% (paper protocol) "
              f"of the last weights; the lines above score their average (--ema {cfg.ema})")
    if best.summary():
        m, h = best.record["metrics"]["paper"], best.record["metrics"]["source_heldout"]
        print(f"[selected] iteration {best.record['iteration']} (held-out sources: HTER {100 * h['hter']:.2f}%, "
              f"AUC {100 * h['auc']:.2f}%): target {target} HTER {100 * m['hter']:.2f}%  AUC {100 * m['auc']:.2f}% "
              f"(paper protocol), in {best.path}")
    print(f"wrote {os.path.join(cfg.out, 'metrics.json')}, roc.png, losses.png, log.csv, checkpoint.pt"
          + (f", {selection.BEST_FILE}" if best.summary() else ""))
    return result


def keep_log_until(path: str, iteration: int) -> None:
    """Drop log.csv's rows after `iteration` (written after the checkpoint a run resumes from)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= iteration]
    if len(kept) < len(rows):
        checkpoint.write_csv_atomic(path, kept)


def _run_worker(trainer: Trainer) -> dict:
    """Processes other than rank 0: train in lock-step, write nothing."""
    while trainer.iteration < trainer.cfg.iters:
        diverged = non_finite(trainer.step())
        if diverged:  # its own batch's losses; torchrun then ends the other processes
            raise TrainingDiverged(f"rank {trainer.rank}: the training diverged at iteration "
                                   f"{trainer.iteration}: {diverged}")
    trainer.replicas_in_sync()
    return {"iterations": trainer.iteration, "rank": trainer.rank}


def main(argv=None):
    ap = config.parser()
    try:
        cfg = config.load(argv)
    except (ValueError, FileNotFoundError) as e:  # a bad option value or a missing --resume checkpoint:
        ap.error(str(e))  # usage and the message, exit status 2, as argparse does
    cli.check_output(ap, "--out", cfg.out, folder=True)  # now, not after building the data
    with cli.errors_exit(ap):
        try:
            result = run(cfg)
        except TrainingStopped as e:
            raise SystemExit(f"{ap.prog}: error: {e}") from None
    if "signum" in result:  # the shell's status for a process ended by that signal
        raise SystemExit(128 + result["signum"])


if __name__ == "__main__":
    main()
