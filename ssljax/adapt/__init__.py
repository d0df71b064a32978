"""Adaptation: probes, fine-tuning and few-shot prompting of a pretrained model on tasks,
run over seeds and inits, with reports and predictions."""
