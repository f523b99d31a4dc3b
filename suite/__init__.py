"""The run layer: knows no paper."""
