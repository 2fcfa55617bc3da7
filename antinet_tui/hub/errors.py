"""AI Hub failures as one error type whose text says what happened and the fix.

qai-hub reports a missing token, a rejected token and an unreachable service as
UserError / InternalError with boxed multi-line text; we recognise them by their first
line (verified against qai-hub 0.56's client.py) and say what to run instead.
"""

from __future__ import annotations

from antinet_tui.exit_codes import Exit

CONFIGURE = "qai-hub configure --api_token <YOUR_API_TOKEN>"
TOKEN_PAGE = "https://aihub.qualcomm.com (sign in, Settings → API Token)"


class HubError(Exception):
    """A failure the operator can act on; `exit_code` is what the CLI returns."""

    def __init__(self, message: str, exit_code: int = Exit.FAILED):
        super().__init__(message)
        self.exit_code = exit_code


class HubNotConfigured(HubError):
    def __init__(self, detail: str):
        super().__init__(
            f"Qualcomm AI Hub is not configured: {detail}. Get an API token at {TOKEN_PAGE}, "
            f"then run: {CONFIGURE}", exit_code=Exit.NOT_CONFIGURED)


class HubUnreachable(HubError):
    def __init__(self, detail: str):
        super().__init__(
            f"Cannot reach Qualcomm AI Hub: {detail}. Check the network (and HTTPS_PROXY if "
            f"you are behind a proxy), then retry. If the API token is new, check it with: "
            f"{CONFIGURE}", exit_code=Exit.UNREACHABLE)


def from_qai_hub(exc: BaseException) -> HubError:
    """Translate an exception raised inside qai_hub (or requests) into a HubError."""
    text = str(exc).strip()
    first_line = text.splitlines()[0] if text else type(exc).__name__
    if "client configuration file" in text or "not found. Please request access" in text:
        return HubNotConfigured("no client configuration file (~/.qai_hub/client.ini)")
    if "API token is missing" in text or "Failed to load configuration file" in text:
        return HubNotConfigured("the configuration file has no API token")
    if "Failed to authenticate" in text:
        return HubError(
            f"Qualcomm AI Hub rejected the API token (bad or expired). Get a new one at "
            f"{TOKEN_PAGE}, then run: {CONFIGURE}", exit_code=Exit.NOT_CONFIGURED)
    if any(s in text for s in ("Could not connect", "Timeout occurred", "unavailable right now",
                               "communication error")):
        return HubUnreachable(first_line)
    if type(exc).__module__.startswith("requests"):
        return HubUnreachable(f"{type(exc).__name__}: {first_line}")
    if type(exc).__name__ == "RateLimitedError":
        return HubError(f"Qualcomm AI Hub is rate-limiting this account: {first_line} Retry later.")
    return HubError(f"Qualcomm AI Hub: {text}")
