"""A plugin-based causal query engine over YAML-declared structural causal models."""
