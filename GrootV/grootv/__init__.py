"""GrootV: the tree-topology vision backbone."""
