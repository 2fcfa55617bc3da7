"""The command line's exit codes, in one place (README.md lists them)."""

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    FAILED = 1  # the request (or an AI Hub job) failed
    USAGE = 2  # bad arguments or bad input
    MODEL = 3  # the model could not be found or loaded
    REJECTED = 4  # refused by the runtime: breaker open, queue full
    NOT_CONFIGURED = 5  # AI Hub: qai-hub missing, no API token, token rejected
    UNREACHABLE = 6  # AI Hub: no network, service down
    INTERRUPTED = 130  # Ctrl-C
    BROKEN_PIPE = 141  # the reader of stdout went away (`| head`); 128 + SIGPIPE, as the shell reports


EXIT_CODES_HELP = "exit codes: " + ", ".join(f"{c.value} {c.name.lower().replace('_', ' ')}" for c in Exit)
