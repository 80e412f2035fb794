"""One install for the whole project.

Installs the Python packages ``grootv`` (GrootV/grootv), ``grootl`` (GrootL/grootl),
``tree_scan`` (third-party/TreeScan) and ``tree_scan_lan`` (third-party/TreeScanLan),
and compiles the operator kernels once, as ``tree_scan._C``; ``tree_scan_lan`` uses
the same compiled operators through ``torch.ops.tree_scan``.

The CUDA kernels are compiled when a GPU is visible or ``FORCE_CUDA=1`` is set
(``CUDA_HOME`` defaults to /usr/local/cuda). Build against the installed torch:

    pip install --no-build-isolation -e .
"""

import glob
import os

from setuptools import find_packages, setup

CSRC = os.path.join("third-party", "TreeScan", "tree_scan", "csrc")
PACKAGE_ROOTS = {
    "tree_scan": "third-party/TreeScan/tree_scan",
    "tree_scan_lan": "third-party/TreeScanLan/tree_scan_lan",
    "grootv": "GrootV/grootv",
    "grootl": "GrootL/grootl",
}


def _packages():
    names = []
    for name, path in PACKAGE_ROOTS.items():
        names += [name] + [f"{name}.{sub}" for sub in find_packages(path)]
    return names


def _want_cuda() -> bool:
    import torch

    if os.environ.get("FORCE_CUDA", "0") == "1":
        os.environ.setdefault("CUDA_HOME", "/usr/local/cuda")
        return True
    return torch.cuda.is_available()


def _extensions():
    with_cuda = _want_cuda()  # before cpp_extension is imported: it reads CUDA_HOME once, on import
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = sorted(glob.glob(os.path.join(CSRC, "*.cpp")) + glob.glob(os.path.join(CSRC, "cpu", "*.cpp")))
    cxx_flags = ["-O3", "-std=c++17"]
    if with_cuda:
        sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
        nvcc_flags = ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"]
        return [CUDAExtension("tree_scan._C", sources, extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags})]
    return [CppExtension("tree_scan._C", sources, extra_compile_args={"cxx": cxx_flags})]


def _build_ext():
    from torch.utils.cpp_extension import BuildExtension

    return BuildExtension.with_options(use_ninja=True)


setup(
    package_dir=PACKAGE_ROOTS,
    packages=_packages(),
    ext_modules=_extensions(),
    cmdclass={"build_ext": _build_ext()},
)
