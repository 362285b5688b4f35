"""Ctrl-C on a command: a swallowed interrupt is raised again between units of work."""
from __future__ import annotations

import os
import signal
import time

import pytest

from flows.options import check_ctrl_c, ctrl_c_noted


def _interrupt_swallowed_by_a_library() -> None:
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)                       # the handler runs here, on the main thread
    except BaseException:                   # what a library catching BaseException does
        pass


def test_a_swallowed_ctrl_c_is_raised_again_by_the_next_check():
    with ctrl_c_noted():
        check_ctrl_c()                      # nothing pending: no exception
        _interrupt_swallowed_by_a_library()
        with pytest.raises(KeyboardInterrupt):
            check_ctrl_c()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    check_ctrl_c()                          # outside: nothing noted any more


def test_ctrl_c_still_raises_at_once():
    with ctrl_c_noted(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with ctrl_c_noted():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            check_ctrl_c()
    finally:
        signal.signal(signal.SIGINT, previous)
