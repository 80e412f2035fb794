"""Fresh processes: the registry from an unrelated directory, one codebase only, two-process training."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mmengine")
pytest.importorskip("grootv.mm")

from grootv_mm_helpers import (  # noqa: E402
    DETECTION_CONFIGS,
    ROOT,
    SEGMENTATION_CONFIGS,
    make_ade,
    shrink_segmentor,
)


def _python(code: str, cwd, timeout: int = 240, **env) -> subprocess.CompletedProcess:
    environment = dict(os.environ, OMP_NUM_THREADS="1", **env)
    environment.pop("PYTHONPATH", None)  # only what is installed, as for a user
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_configs_register_the_backbone_from_any_directory(tmp_path):
    """Nothing imports grootv but the configs' custom_imports, started far from the repository."""
    _python(f"""
        import importlib, sys
        from mmengine.config import Config
        from mmengine.registry import init_default_scope

        assert "grootv" not in sys.modules
        for path in {[DETECTION_CONFIGS[0], SEGMENTATION_CONFIGS[0]]!r}:
            cfg = Config.fromfile(path)
            assert "grootv.mm" in sys.modules
            init_default_scope(cfg.default_scope)
            models = importlib.import_module(cfg.default_scope + ".registry").MODELS
            cfg.model.backbone.update(channels=8, depths=[1, 1, 1, 1], init_cfg=None)
            backbone = models.build(cfg.model.backbone)
            assert type(backbone).__name__ == "GrootVBackbone", type(backbone)
        """, cwd=tmp_path)


def test_one_codebase_is_enough_and_none_is_a_clear_error(tmp_path):
    # A None entry in sys.modules makes Python treat a package as absent.
    _python("""
        import sys

        sys.modules["mmdet"] = None
        import grootv.mm
        assert grootv.mm.REGISTERED_IN == ("mmseg",)
        from mmseg.registry import MODELS
        assert MODELS.module_dict["GrootV"] is grootv.mm.GrootVBackbone

        for name in [m for m in sys.modules if m.startswith("grootv.mm")]:
            del sys.modules[name]
        del sys.modules["mmdet"]
        sys.modules["mmseg"] = None
        import grootv.mm
        assert grootv.mm.REGISTERED_IN == ("mmdet",)

        for name in [m for m in sys.modules if m.startswith("grootv.mm")]:
            del sys.modules[name]
        sys.modules["mmdet"] = None
        try:
            import grootv.mm
        except ImportError as error:
            assert "neither is installed" in str(error), error
        else:
            raise AssertionError("no error without mmdet and mmseg")
        """, cwd=tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_through_dist_train_sh(tmp_path, monkeypatch):
    """GrootV/scripts/dist_train.sh on the CPU: gloo, DDP, the mIoU evaluation sharded."""
    from mmengine.config import Config

    monkeypatch.setenv("GROOTVL_ADE_ROOT", make_ade(str(tmp_path / "ade"), train=4))
    cfg = Config.fromfile(SEGMENTATION_CONFIGS[1])
    work_dir = tmp_path / "work"
    shrink_segmentor(cfg, str(work_dir))
    config = str(tmp_path / "tiny_upernet.py")
    cfg.dump(config)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable, MASTER_PORT=str(_free_port()))
    done = subprocess.run(["bash", os.path.join(ROOT, "GrootV", "scripts", "dist_train.sh"), config, "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "Iter(train) [2/2]" in output and "mIoU:" in output
    assert (work_dir / "iter_2.pth").is_file()
