"""SB3 Q-network → ONNX, with the metadata the service checks, and a parity check."""
