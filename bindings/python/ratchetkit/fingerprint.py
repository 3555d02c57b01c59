"""Safety numbers (fingerprints): digits to read out, a QR code to scan."""

from __future__ import annotations

from ctypes import byref, c_bool, create_string_buffer

from ._handle import Handle
from ._lib import FingerprintP, as_bytes, lib, rk_bytes, take_bytes
from .identity import PublicKey

__all__ = ["Fingerprint", "SAFETY_NUMBER_LEN", "DEFAULT_ITERATIONS", "FINGERPRINT_VERSION"]

#: Number of digits of a displayable safety number.
SAFETY_NUMBER_LEN = 60
#: The iteration count Signal clients use.
DEFAULT_ITERATIONS = 5200
#: The scannable version Signal clients use today.
FINGERPRINT_VERSION = 2


class Fingerprint(Handle):
    """A safety number between a local and a remote identity.

    Both sides compute the same 60 digits (:attr:`displayable`, also
    ``str(fingerprint)``); the scannable form (:attr:`scannable`, shown as
    a QR code by :meth:`qr_svg` or :meth:`qr_text`) is compared with the
    other side's by :meth:`compare`. Usually made by
    :meth:`ratchetkit.Store.safety_number`. Immutable; may be shared between
    threads.
    """

    __slots__ = ()
    _free = lib.rk_fingerprint_free

    def __init__(
        self,
        local_id: bytes,
        local_key: PublicKey,
        remote_id: bytes,
        remote_key: PublicKey,
        *,
        iterations: int = DEFAULT_ITERATIONS,
        version: int = FINGERPRINT_VERSION,
    ) -> None:
        """Computes a safety number from both identities.

        ``local_id``/``remote_id`` are the users' stable ids as bytes (Signal
        uses service-id bytes with version 2, phone numbers with version 1);
        ``version`` (1 or 2) only changes the scannable form; ``iterations``
        is in 2..1000000. Out-of-range values raise
        :class:`InvalidArgumentError`.
        """
        local_id = as_bytes(local_id, "local_id")
        remote_id = as_bytes(remote_id, "remote_id")
        ptr = FingerprintP()
        with local_key._h as local, remote_key._h as remote:
            lib.rk_fingerprint_new(
                version,
                iterations,
                local_id,
                len(local_id),
                local,
                remote_id,
                len(remote_id),
                remote,
                byref(ptr),
            )
        self._adopt(ptr)

    @property
    def displayable(self) -> str:
        """The 60-digit safety number, the same on both sides."""
        buf = create_string_buffer(SAFETY_NUMBER_LEN + 1)
        with self._h as fingerprint:
            lib.rk_fingerprint_displayable(fingerprint, buf, len(buf))
        return buf.value.decode("ascii")

    def formatted(self, separator: str = " ") -> str:
        """The safety number in 12 groups of 5 digits, as apps show it."""
        digits = self.displayable
        return separator.join(digits[i : i + 5] for i in range(0, len(digits), 5))

    @property
    def scannable(self) -> bytes:
        """The scannable form: the bytes the QR code carries."""
        out = rk_bytes()
        with self._h as fingerprint:
            lib.rk_fingerprint_scannable(fingerprint, byref(out))
        return take_bytes(out)

    def compare(self, theirs: bytes) -> bool:
        """Whether the other side's scannable form (as scanned) matches ours.

        True exactly when both sides computed the safety number over the same
        two identity keys (constant time). Raises
        :class:`InvalidFingerprintError` for bytes that do not parse and
        :class:`FingerprintVersionMismatchError` for another version.
        """
        theirs = as_bytes(theirs, "scannable fingerprint")
        matches = c_bool()
        with self._h as fingerprint:
            lib.rk_fingerprint_compare(fingerprint, theirs, len(theirs), byref(matches))
        return matches.value

    def qr_svg(self) -> str:
        """The scannable form as a QR code in an SVG document."""
        out = rk_bytes()
        with self._h as fingerprint:
            lib.rk_fingerprint_qr_svg(fingerprint, byref(out))
        return take_bytes(out).decode("utf-8")

    def qr_text(self) -> str:
        """The scannable form as a QR code for a terminal.

        Lines of block characters (two modules per character cell, with a
        quiet zone), each ending in a newline, drawn for light text on a dark
        background.
        """
        out = rk_bytes()
        with self._h as fingerprint:
            lib.rk_fingerprint_qr_text(fingerprint, byref(out))
        return take_bytes(out).decode("utf-8")

    def __str__(self) -> str:
        return self.displayable

    def __repr__(self) -> str:
        if self.closed:
            return "<Fingerprint (closed)>"
        return f"<Fingerprint {self.formatted()}>"
