"""The decision service: Prometheus → features → ONNX policy → guardrails → decision."""
