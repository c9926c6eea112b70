"""Run a process's main coroutine under uvloop until SIGTERM (or SIGINT)."""

from __future__ import annotations

import asyncio
import signal
from typing import Awaitable, Callable

import uvloop


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)``; ``stop`` is set by SIGTERM, and by SIGINT unless this process
    ignores SIGINT (children of ``hotpath serve`` do: the supervisor orders the stop)."""

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = [signal.SIGTERM]
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signals.append(signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    uvloop.run(_run())
