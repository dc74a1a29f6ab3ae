"""The contract between pushctl and a push platform: inventory, wire frames, control API schemas.

This is the only package the reference stack's services import from pushctl; it stays free of
CLI, action and experiment code so that pushctl can drive a platform it did not ship.
"""
