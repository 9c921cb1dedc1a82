"""Training of the four autoencoders on normal images (torch; never installed on the device)."""
