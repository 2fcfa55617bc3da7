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
    LOG_LOST = 7  # the work was done, but the session log lost records (disk full, I/O error)
    HANGUP = 129  # SIGHUP (the terminal went away): handled as Ctrl-C; 128 + SIGHUP
    INTERRUPTED = 130  # Ctrl-C
    BROKEN_PIPE = 141  # the reader of stdout went away (`| head`); 128 + SIGPIPE, as the shell reports
    TERMINATED = 143  # SIGTERM (a service manager stopping us): handled as Ctrl-C; 128 + SIGTERM


EXIT_CODES_HELP = "exit codes: " + ", ".join(f"{c.value} {c.name.lower().replace('_', ' ')}" for c in Exit)
