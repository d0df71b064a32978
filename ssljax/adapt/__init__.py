"""Adaptation and evaluation: task data, metrics, probes and fine-tuning of pretrained runs."""
