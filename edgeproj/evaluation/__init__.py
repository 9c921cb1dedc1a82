"""Evaluation like the paper, through the deployed runtime: pixel AUROC, AU-PRO, image AUROC, studies."""
