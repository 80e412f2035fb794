"""GrootL: tree-topology Mamba language model."""
