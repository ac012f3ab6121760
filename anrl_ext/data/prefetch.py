"""Loading the next iteration's batches in the background while this one trains (--loader-threads), and
reading the frames of a scoring batch in parallel.

The batches, and the random state a checkpoint stores, are exactly those of loading in the training loop
(BalancedDomainSampler.sample): one background thread draws the indices and augments the samples in the
same order, from the same generators; reading, resizing and converting the frames, which draw nothing, are
spread over a pool of threads (data/frames.py's steps). A run gives the same losses with any number of loader threads.
"""
from __future__ import annotations

import collections
import contextlib
import queue
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List, Tuple

from .datasets import BalancedDomainSampler, collate

# how often a background thread blocked on a full queue looks whether it was told to stop
_POLL_SECONDS = 0.1


def random_state(sampler: BalancedDomainSampler) -> dict:
    """The sampler's and its dataset's augmentation generator's state: what the next batches depend on."""
    return {"sampler": sampler.state_dict(), "augment_rng": sampler.dataset.augment_rng.bit_generator.state}


def set_random_state(sampler: BalancedDomainSampler, state: dict) -> None:
    """Put back a random_state(sampler)."""
    sampler.load_state_dict(state["sampler"])
    sampler.dataset.augment_rng.bit_generator.state = state["augment_rng"]


def _load_batches(sampler: BalancedDomainSampler, pool: ThreadPoolExecutor) -> List[dict]:
    """sampler.sample(), its frames read and converted by `pool` (data/frames.py's steps)."""
    dataset, drawn = sampler.dataset, sampler.draw()
    flat = [i for idx in drawn for i in idx]
    # augmented() draws from augment_rng: in sample order, in this thread
    frames = [dataset.augmented(loaded) for loaded in pool.map(dataset.load, flat)]
    samples = iter(pool.map(dataset.to_sample, flat, frames))
    return [collate([next(samples) for _ in idx]) for idx in drawn]


def _produce(sampler: BalancedDomainSampler, threads: int, ready: queue.Queue, stop: threading.Event,
             drawn: collections.deque) -> None:
    # Holds no reference to the Prefetcher, so that dropping it (without close()) ends this thread too.
    with ThreadPoolExecutor(threads, thread_name_prefix="anrl-load") as pool:
        while not stop.is_set():
            state = random_state(sampler)
            drawn.append(state)  # until next() gives these batches
            try:
                item = (state, _load_batches(sampler, pool), None)
            except Exception as e:  # raised in the training loop, at the step that needed these batches
                item = (state, None, e)
            while not stop.is_set():
                try:
                    ready.put(item, timeout=_POLL_SECONDS)
                    break
                except queue.Full:
                    continue
            if item[2] is not None:
                return


class Prefetcher:
    """The sampler's batches, each loaded while the previous one trains: next() gives them in order."""

    def __init__(self, sampler: BalancedDomainSampler, threads: int):
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self._ready: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._next = None  # the item state() took off the queue, for next() to give
        self._sampler = sampler
        self._drawn: collections.deque = collections.deque()  # random_state() before each batch not yet given
        self._thread = threading.Thread(target=_produce, args=(sampler, threads, self._ready, self._stop,
                                                               self._drawn), name="anrl-prefetch", daemon=True)
        self._finalizer = weakref.finalize(self, self._stop.set)
        self._thread.start()

    def _peek(self) -> Tuple[dict, List[dict], BaseException]:
        if self._stop.is_set():
            raise RuntimeError("this Prefetcher was closed")
        while self._next is None:
            try:
                self._next = self._ready.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not self._thread.is_alive():  # not expected: _produce hands over its errors
                    raise RuntimeError("the background loader thread ended without a batch") from None
        return self._next

    def next(self) -> List[dict]:
        """The next iteration's batches (one per domain), as sampler.sample() would give them; the error loading
        them raised, if any (again at every call: the loader stops at it)."""
        _, batches, error = self._peek()
        if error is not None:
            raise error
        self._next = None
        self._drawn.popleft()
        return batches

    def state(self) -> dict:
        """random_state() as it was before the batches next() gives next were drawn: what a checkpoint stores."""
        return self._peek()[0]

    def close(self) -> None:
        """Stop the background threads (they finish the batch they are loading), and put the sampler's and the
        augmentation's generators back as they were before the batches next() has not given: as if those had
        never been drawn, so that loading goes on with them."""
        self._stop.set()
        self._thread.join()
        if self._drawn:
            set_random_state(self._sampler, self._drawn[0])
            self._drawn.clear()


def in_batches(dataset, batch: int, threads: int = 0) -> Iterator[dict]:
    """`dataset`'s samples in order, collated `batch` at a time; for scoring, which draws nothing at random, so
    with `threads` the samples of a batch are read that many at a time."""
    with ThreadPoolExecutor(threads, thread_name_prefix="anrl-read") if threads else contextlib.nullcontext() as pool:
        read = pool.map if pool else map
        for start in range(0, len(dataset), batch):
            yield collate(list(read(dataset.__getitem__, range(start, min(len(dataset), start + batch)))))
