"""Small cases of every GPU kernel, for compute-sanitizer (memcheck, racecheck, synccheck).

Runs the CUDA C++ kernels (grid weights, MST, BFS) and the Triton ones (the plan, the
scans forward and backward) once each on small trees, and checks the results against the
CPU, so that a sanitizer run both exercises and verifies them. Prints "ok" at the end.

    compute-sanitizer --tool memcheck python3 benchmarks/gpu_sanitize_cases.py
"""

import torch

import tree_scan
from tree_scan import reference


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    for height, width, channels in ((1, 1, 3), (3, 5, 8), (9, 12, 20)):
        guide = torch.randn(2, channels, height, width, generator=generator)
        for metric in tree_scan.METRICS:
            got = tree_scan.grid_edge_weights(guide.cuda(), metric).cpu()
            assert torch.allclose(got, tree_scan.grid_edge_weights(guide, metric), rtol=1e-5, atol=1e-6), metric
        tree = tree_scan.grid_mst(guide.cuda())
        assert torch.equal(tree.cpu(), tree_scan.grid_mst(guide)), "MST"
        length = height * width
        assert torch.equal(tree_scan.bfs(tree).parent.cpu(), tree_scan.bfs(tree.cpu()).parent), "BFS"
        for root in (0, length - 1):
            order, cpu_order = tree_scan.prepare(tree, root=root), tree_scan.prepare(tree.cpu(), root=root)
            assert torch.equal(order.parent.cpu(), cpu_order.parent), "prepare"
            for dtype in (torch.float32, torch.bfloat16):
                x = torch.randn(2, channels, length, generator=generator).to(dtype)
                w = torch.rand(2, channels, length, generator=generator).to(dtype)
                for scan, backward in ((tree_scan.tree_scan, reference.scan_all_roots_backward),
                                       (tree_scan.tree_scan_causal, reference.scan_causal_backward)):
                    xg, wg = x.cuda().requires_grad_(), w.cuda().requires_grad_()
                    out = scan(xg, wg, order)
                    grads = torch.autograd.grad(out, (xg, wg), torch.ones_like(out))
                    want = scan(x.double(), w.double(), cpu_order)
                    tolerance = 1e-4 if dtype == torch.float32 else 3e-2
                    assert torch.allclose(out.double().cpu(), want, rtol=tolerance, atol=tolerance), scan.__name__
                    grad_want = backward(torch.ones(x.shape, dtype=torch.float64), x.double(), w.double(),
                                         cpu_order.order, cpu_order.parent)
                    for g, gw in zip(grads, grad_want):
                        assert torch.allclose(g.double().cpu(), gw, rtol=tolerance, atol=tolerance), "backward"
    torch.cuda.synchronize()
    print("ok")


if __name__ == "__main__":
    main()
