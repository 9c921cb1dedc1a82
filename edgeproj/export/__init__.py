"""Export: a training run -> ONNX graphs of the energy gradient and the masked-Adam step, plus the manifest."""
