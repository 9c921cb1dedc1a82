"""Calibration on the device from normal images (torch-free): thresholds written into the manifest."""
