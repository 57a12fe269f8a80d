"""RKNet and its config, regularisers of the vector field, ONNX export. Builds on odenet.ode.
"""
