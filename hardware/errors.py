"""What can go wrong talking to a meter, split by what the caller should do about it.

``CommError`` and its subclasses: the bus or the gateway let us down (no reply, garbage, a bad
checksum, a reply from another meter, gateway unreachable). Retry later; never a reading.
``MeterRefused``: the meter answered and said no. ``Unsupported``: the profile has no such
command. Those two are final for a command.
"""
from __future__ import annotations


class HardwareError(Exception):
    retryable = False


class CommError(HardwareError):
    retryable = True


class GatewayDown(CommError):
    """The gateway did not accept a TCP connection (or dropped it)."""


class NoReply(CommError):
    """No complete, valid reply within the timeout."""


class BadFrame(CommError):
    """Bytes came back but were not a trustworthy frame (checksum, length, garbage)."""


class WrongAddress(CommError):
    """A valid frame came back from another meter, or for another request."""


class MeterRefused(HardwareError):
    """The meter answered with an error/exception reply.

    ``code`` is the protocol's error code when the reply carried one: the DL/T 645 error status
    (the ERR byte of a refused read or write, the two-byte SERR word of a refused 03H recharge),
    or the Modbus exception code. Callers classify by it, never by the message text.
    """

    def __init__(self, message: str, *, code: int | None = None):
        super().__init__(message)
        self.code = code


class Unsupported(HardwareError):
    """The profile (meter model) cannot do this."""
