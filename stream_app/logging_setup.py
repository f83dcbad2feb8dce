"""The one logging setup of the `stream-app` commands (the service's and the model's: train, evaluate)."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# client libraries log every connection at INFO; their warnings are what an operator needs
QUIET_LOGGERS = ("kafka", "aiokafka")


def configure_logging(verbose: bool = False) -> None:
    """Log to stderr at INFO, or DEBUG when `verbose`.

    Safe to call more than once: the handler is installed by the first call only (the `stream-app` group
    calls it, then `train`/`evaluate` with their own ``-v``), and a later ``verbose`` still turns on DEBUG.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT)
    if verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
