"""Line inspection (`edgeproj inspect`): frames from cameras, streams, videos or folders -> verdicts.

Torch-free, like the runtime: it runs on the device all day.
"""
