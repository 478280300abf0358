"""Spec stage: YAML with locations → typed, validated spec documents."""
