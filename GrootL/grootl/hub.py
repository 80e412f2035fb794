"""What comes from the Hugging Face Hub, and whether the Hub answers: asked once, quickly,
before anything waits on it.

Without a network, huggingface_hub and datasets retry each download for tens of seconds and
then fail with a long traceback. The command lines ask first, and only when they need the Hub:
a model argument that is not a local folder, or lm-eval tasks that are not among the local
task files (lm-eval's own tasks download their data). With ``HF_HUB_OFFLINE`` (or
``HF_DATASETS_OFFLINE`` for task data) set nothing is asked: what is in the local cache loads
and what is not fails at once, which the command lines report in one line. Otherwise one
request to the Hub's endpoint, with a timeout of a few seconds, decides (through
huggingface_hub's own HTTP client, so proxies and ``HF_ENDPOINT`` are honoured).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from huggingface_hub import constants
from huggingface_hub.utils import get_session

from .errors import CheckpointError, HubUnreachableError

__all__ = ["OFFLINE_RECIPE", "PROBE_TIMEOUT", "offline_switch", "hub_problem", "require_hub", "load_named"]

Loaded = TypeVar("Loaded")

OFFLINE_RECIPE = "the offline recipe in docs/grootl.md (section 'Offline')"
# Seconds to wait for the Hub's answer.
PROBE_TIMEOUT = 5.0

_TRUE = {"1", "on", "yes", "true"}


def offline_switch(for_datasets: bool = False) -> str | None:
    """The environment variable that turns downloads off, if one is set. With ``for_datasets``
    the datasets library's own ``HF_DATASETS_OFFLINE`` counts too."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") + (("HF_DATASETS_OFFLINE",) if for_datasets else ())
    for name in names:
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return name
    return None


def hub_problem() -> str | None:
    """Why the Hub's endpoint does not answer, or None when it does."""
    try:
        get_session().head(constants.ENDPOINT, timeout=PROBE_TIMEOUT)
    except Exception as error:  # DNS, refused, timeout, proxy, TLS: any failure to get an answer means the same
        return f"{constants.ENDPOINT} does not answer ({type(error).__name__}: {error})"
    return None


def require_hub(what: str, for_datasets: bool = False) -> None:
    """Raises :class:`HubUnreachableError` at once when ``what`` (e.g. "the data of the tasks
    piqa") has to be downloaded and the Hub does not answer. With an offline switch set it
    returns: the local cache may hold ``what``."""
    if offline_switch(for_datasets) is not None:
        return
    problem = hub_problem()
    if problem is not None:
        cache = "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1" if for_datasets else "HF_HUB_OFFLINE=1"
        raise HubUnreachableError(
            f"{what} come from the Hugging Face Hub, and {problem}; without a network see {OFFLINE_RECIPE} "
            f"(what is already in your cache loads with {cache})"
        )


def load_named(load: Callable[[str], Loaded], name, flag: str) -> Loaded:
    """``load(name)`` for a local folder or a Hub repository id that the user gave as ``flag``.
    A name that is neither, a Hub that does not answer, or a folder that transformers cannot
    read is a :class:`~grootl.errors.CheckpointError` naming ``flag``."""
    if isinstance(name, (str, os.PathLike)) and not os.path.isdir(name):
        name = os.fspath(name)
        if os.path.exists(name):
            raise CheckpointError(f"{flag} {name!r} is a file; expected a folder (or a Hub repository id)")
        # Hub repository ids are "name" or "owner/name"; anything else can only be a local path.
        if os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1:
            raise CheckpointError(f"{flag} {name!r}: no such folder")
        require_hub(f"{flag} {name!r} is not a local folder, so its files would", for_datasets=False)
    try:
        return load(name)
    except OSError as error:  # transformers' "not a local folder and not a valid model identifier", missing files...
        raise CheckpointError(f"{flag} {name!r} cannot be loaded: {str(error).splitlines()[0]}") from None
