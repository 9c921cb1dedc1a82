"""`edgeproj bench`: iterations per millisecond of every backend against the PyTorch eager loop."""
