"""The base class of every object that owns a library handle."""

from __future__ import annotations

import weakref
from types import TracebackType
from typing import Any, ClassVar, Optional, Type, TypeVar

_H = TypeVar("_H", bound="Handle")


class Handle:
    """Owns one library handle and frees it exactly once.

    The handle is freed by :meth:`close`, at the end of a ``with`` block, or
    when the object is garbage collected (through :func:`weakref.finalize`,
    which also runs safely at interpreter exit), whichever comes first.
    Using an object after :meth:`close` raises :class:`ValueError`.

    Closing is not synchronized with other threads: do not close an object
    while another thread is still using it (the C library's rule for every
    handle).
    """

    __slots__ = ("_ptr", "_finalizer", "__weakref__")

    #: The C function that frees this kind of handle.
    _free: ClassVar[Any]

    def __init__(self) -> None:
        raise TypeError(f"{type(self).__name__} objects are made by its class methods")

    def _adopt(self, ptr: Any) -> None:
        """Takes ownership of ``ptr``, a non-NULL handle just returned by the library."""
        self._ptr = ptr
        self._finalizer = weakref.finalize(self, type(self)._free, ptr)

    @classmethod
    def _wrap(cls: Type[_H], ptr: Any) -> _H:
        """A new object owning ``ptr`` (bypasses ``__init__``)."""
        self = cls.__new__(cls)
        self._adopt(ptr)
        return self

    def _p(self) -> Any:
        """The live handle, or ValueError after close()."""
        ptr = self._ptr
        if ptr is None:
            raise ValueError(f"{type(self).__name__} is closed")
        return ptr

    def close(self) -> None:
        """Frees the handle now. Calling it again does nothing."""
        self._ptr = None
        self._finalizer()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._ptr is None

    def __enter__(self: _H) -> _H:
        self._p()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} objects cannot be pickled")

    def __copy__(self) -> Any:
        raise TypeError(f"{type(self).__name__} objects cannot be copied")

    def __deepcopy__(self, memo: Any) -> Any:
        raise TypeError(f"{type(self).__name__} objects cannot be copied")
