"""The GPU kernels compile for an H200 (sm_90), here, without a GPU.

Triton's interpreter (the other Triton tests) runs a kernel's Python step by step and
accepts things the compiler refuses (types, shapes, constexpr use). So every kernel variant
that the interpreter launches below is compiled too, by Triton's own compiler and the ptxas
it carries, to machine code for sm_90: what a GPU would do at the first call.
"""

import inspect
import json
import os
import subprocess
import sys
import textwrap

import brute_force as bf
import pytest
import torch

import tree_scan
from tree_scan import triton_plan, triton_scan
from tree_scan_lan import triton_selective

pytestmark = pytest.mark.skipif(not triton_scan.INTERPRETING, reason="records launches in Triton's interpreter")

TRITON_TYPES = {torch.float32: "fp32", torch.float64: "fp64", torch.bfloat16: "bf16", torch.float16: "fp16",
                torch.int64: "i64", torch.int32: "i32", torch.int8: "i8", torch.bool: "i1"}


def recorded_launches(monkeypatch) -> list[dict]:
    """Runs a plan, both scans and GrootL's fused scan (forward and backward, three dtypes)
    and records every kernel launch as (module, kernel, argument types, constexpr values)."""
    launches = []

    class Recorder:
        def __init__(self, module, name, kernel):
            self.module, self.name, self.kernel = module, name, kernel

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                names = self.kernel.arg_names
                signature, constexprs, options = {}, {}, {}
                for name, value in list(zip(names, args)) + list(kwargs.items()):
                    if name in ("num_warps", "num_stages"):
                        options[name] = value
                        continue
                    if name in constexpr_names:
                        constexprs[name] = value
                    elif isinstance(value, torch.Tensor):
                        signature[name] = "*" + TRITON_TYPES[value.dtype]
                    elif isinstance(value, bool):
                        signature[name] = "i1"
                    else:
                        signature[name] = "i32" if -2**31 <= value < 2**31 else "i64"
                launches.append({"module": self.module.__name__, "kernel": self.name, "signature": signature,
                                 "constexprs": constexprs, "options": options})
                return self.kernel[grid](*args, **kwargs)

            parameters = inspect.signature(self.kernel.fn).parameters.values()
            constexpr_names = {p.name for p in parameters if "constexpr" in str(p.annotation)}
            return launch

    for module in (triton_scan, triton_plan, triton_selective):
        for name in dir(module):
            kernel = getattr(module, name)
            if name.endswith("_kernel") and hasattr(kernel, "arg_names"):
                monkeypatch.setattr(module, name, Recorder(module, name, kernel))

    generator = torch.Generator().manual_seed(0)
    tree = torch.stack([bf.random_tree(40, generator) for _ in range(2)])
    order = tree_scan.TreeOrder(*triton_plan.plan(tree, 40, torch.ones(2, 40, dtype=torch.bool)))
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        x = torch.randn(2, 5, 40, dtype=dtype, requires_grad=True)
        w = torch.rand(2, 5, 40, dtype=dtype, requires_grad=True)
        for scan in (triton_scan.tree_scan, triton_scan.tree_scan_causal):
            scan(x, w, order).sum().backward()
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        x, B, C = torch.randn(2, 40, 3, dtype=dtype), torch.randn(2, 40, 16, dtype=dtype), torch.randn(2, 40, 16,
                                                                                                        dtype=dtype)
        delta, A, D = torch.rand(2, 40, 3, dtype=acc), -torch.rand(3, 16, dtype=acc), torch.rand(3, dtype=acc)
        for plan in (list(order.layout), None):
            y, final = triton_selective.forward(x, delta, A, B, C, D, plan, 0.3)
            triton_selective.backward(y, final, x, delta, A, B, C, D, plan, 0.3)
    unique = {json.dumps(launch, sort_keys=True) for launch in launches}
    return [json.loads(launch) for launch in sorted(unique)]


def test_every_kernel_variant_compiles_for_sm90(monkeypatch, tmp_path):
    launches = recorded_launches(monkeypatch)
    assert {launch["kernel"] for launch in launches} >= {"_scan_forward_kernel", "_scan_backward_kernel",
                                                        "_doubling_kernel", "_elements_kernel",
                                                        "_selective_forward_kernel", "_selective_backward_kernel"}
    script = textwrap.dedent(
        """
        import importlib, json, sys
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource

        for launch in json.load(open(sys.argv[1])):
            kernel = getattr(importlib.import_module(launch["module"]), launch["kernel"])
            signature = dict(launch["signature"], **{name: "constexpr" for name in launch["constexprs"]})
            source = ASTSource(fn=kernel, signature=signature, constexprs=launch["constexprs"])
            compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=launch["options"])
            assert compiled.asm["cubin"], launch["kernel"]
        print("compiled", len(json.load(open(sys.argv[1]))))
        """
    )
    (tmp_path / "launches.json").write_text(json.dumps(launches))
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    environment["TRITON_CACHE_DIR"] = str(tmp_path / "cache")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "launches.json")], env=environment,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == f"compiled {len(launches)}"
