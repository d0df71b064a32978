"""Pretraining: masking and objectives, the pure step, the train state, the mesh and the
jit/pmap strategies, the optimizer, checkpoints, metrics, and the loop that joins them."""
