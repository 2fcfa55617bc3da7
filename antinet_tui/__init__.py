"""antinet-tui: a terminal dashboard for on-device LLM inference."""

__version__ = "0.1.0"
