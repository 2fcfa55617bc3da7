"""Qualcomm AI Hub: hosted Snapdragon devices, and profiling a model under HTP perf modes.

Only `antinet-tui hub …` uses this package, and it imports qai_hub lazily: the
dashboard and the engines never need AI Hub, a token or the network.
"""
