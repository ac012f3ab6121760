"""Stop training between iterations on Ctrl-C or SIGTERM, so that the checkpoint holds whole steps."""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Which signal asked the loop to stop (None: none yet). A second signal stops at once."""

    def __init__(self):
        self.signum: Optional[int] = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt  # asked twice: the user will not wait for the step to finish
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: stopping after this iteration, with a checkpoint "
              "(send it again to stop at once, without one)", file=sys.stderr, flush=True)


@contextmanager
def between_steps(enabled: bool = True) -> Iterator[StopRequest]:
    """While open, SIGINT and SIGTERM set the request instead of interrupting; on leaving, the
    handlers before are back. A signal the process ignores (SIGINT under nohup or `&` in a script)
    stays ignored. Not enabled (or off the main thread, where Python cannot install handlers), the
    signals keep their usual effect and the request stays empty."""
    request = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield request
        return
    before = {s: signal.signal(s, request._handle) for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield request
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
