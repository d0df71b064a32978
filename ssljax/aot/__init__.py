"""Ahead-of-time: the pretraining step compiled for accelerators this machine does not have
(TPU slices through libtpu's compile-only devices, GPU nodes through the CUDA plugin and
XLA's target configs in gpus/), and what the optimized HLO says about memory, collectives
and the roofline."""
