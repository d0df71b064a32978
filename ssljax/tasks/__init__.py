"""Downstream data: task readers, model rows with targets, metrics, baselines and the
registry of task kinds. Imports inference, never adapt."""
