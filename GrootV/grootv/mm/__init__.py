"""GrootV for detection (mmdet 3.x) and segmentation (mmsegmentation 1.x).

Importing this package registers the backbone as ``type='GrootV'`` in the ``MODELS``
registry of every one of mmdet and mmseg that is installed. A config only needs

    custom_imports = dict(imports=['grootv.mm'], allow_failed_imports=False)

and works from any working directory: ``grootv`` is an installed package, so nothing
depends on where the command is started (the usual "not in the model registry" failure
of backbones registered by a file next to the config).

Entry points: ``python -m grootv.mm.train CONFIG``, ``python -m grootv.mm.test CONFIG
CHECKPOINT``, ``python -m grootv.mm.complexity CONFIG`` (see docs/detection_segmentation.md).

Importing it also makes mmengine's checkpoint loading read weights only (see
:mod:`grootv.mm.safe_loading`): a checkpoint that pickles other objects is refused unless
it is loaded inside :func:`trusted_checkpoints` (``--trust-checkpoint``).
"""

from __future__ import annotations

import importlib
import importlib.util

from . import safe_loading
from .backbone import GrootVBackbone
from .pretrained import load_pretrained
from .safe_loading import trusted_checkpoints

__all__ = ["REGISTERED_IN", "REGISTRY_NAME", "GrootVBackbone", "load_pretrained", "trusted_checkpoints"]

REGISTRY_NAME = "GrootV"
_CODEBASES = {"mmdet": "mmdet (3.x)", "mmseg": "mmsegmentation (1.x)"}


def _register() -> tuple[str, ...]:
    # Only the codebases that are installed: mmdet alone or mmseg alone is a fine setup.
    # One that is installed but fails to import is an error worth seeing, not a skip.
    present = [name for name in _CODEBASES if importlib.util.find_spec(name) is not None]
    if not present:
        raise ImportError(f"grootv.mm registers the GrootV backbone for {' and '.join(_CODEBASES.values())}, "
                          "but neither is installed; install them with bash scripts/setup.sh")
    for name in present:
        registry = importlib.import_module(f"{name}.registry").MODELS
        # module_dict, not get(): get() would import every model of the codebase now.
        if registry.module_dict.get(REGISTRY_NAME) is not GrootVBackbone:
            registry.register_module(name=REGISTRY_NAME, module=GrootVBackbone)
    return tuple(present)


REGISTERED_IN = _register()
safe_loading.install()
