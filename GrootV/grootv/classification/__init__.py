"""ImageNet-style classification with GrootV (or any timm model) on ImageFolder data.

    python -m grootv.classification.main --cfg CFG --data-path DIR --output OUT   train / --eval / --throughput
    python -m grootv.classification.demo                                          the demo (embedded dataset)

Modules, in the order a run uses them: ``config`` (yacs keys of the release, merging,
validation), ``distributed`` (torchrun processes, devices), ``data`` (ImageFolder,
transforms, samplers, Mixup), ``model`` (MODEL.TYPE -> GrootV or timm), ``optim``
(AdamW and its weight-decay groups), ``schedule`` (linear lr scaling, warm-up + cosine),
``engine`` (train one epoch, evaluate, throughput, AMP), ``checkpoint`` (atomic saves,
resume), ``metrics`` (metrics.jsonl), ``main`` (the command line), ``demo``.
See docs/classification.md.
"""
