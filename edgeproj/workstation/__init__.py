"""Workstation flows that need the training stack: train-or-reuse + export, evaluation reports, the demo."""
