"""The science of DeepAlign, importable and testable without pyworkflow or pwem.

Conventions (Euler angles, shifts, units) are written once, in :mod:`.geometry`.
"""
