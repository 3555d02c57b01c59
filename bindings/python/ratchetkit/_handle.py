"""The base class of every object that owns a library handle, and the one
rule by which handles are used and freed.

Every C call on a handle *borrows* it (:meth:`_Owner.enter` before the call,
:meth:`_Owner.leave` after it, or ``with obj._h as ptr:``), and so does
every call that passes the handle as an argument: each handle keeps a count
of the calls in flight on it. Closing marks the handle closed, so that no
new call can borrow it, and frees it only when no call is using it: at once
when none is in flight, otherwise when the last call in flight returns
(closing never waits). The garbage collector and interpreter exit close
through the same :meth:`_Owner.close`, so a handle that a daemon thread is
still using at exit is not freed (the process ends with it allocated).
"""

from __future__ import annotations

import sys
import threading
import weakref
from types import TracebackType
from typing import Any, Callable, ClassVar, List, Optional, Type, TypeVar

_H = TypeVar("_H", bound="Handle")


class _Owner:
    """One library handle: the pointer, the calls using it, and its free.

    Kept apart from the :class:`Handle` so that the finalizer can hold it
    without keeping the Handle alive.

    - :meth:`enter` raises :class:`ValueError` once the handle is closed;
      otherwise it counts one more call in flight and returns the pointer.
    - :meth:`leave` counts that call out again; the last call to leave a
      closed handle frees it.
    - :meth:`close` marks the handle closed and frees it if no call is in
      flight. It never waits for a call: a handle closed while calls run is
      freed by the last of them to leave (the free is deferred), so closing
      from any thread, from a finalizer, or at interpreter exit cannot
      deadlock.

    The calls in flight are the entries of a list, and the pointer to free
    sits in a one-element list that the free takes it out of. Under the GIL,
    ``list.append``, ``list.pop`` and reading or setting an attribute are
    each atomic and happen in one global order, which is all this needs:

    - a call registers itself *before* it reads :attr:`closed`, and
      :meth:`close` sets :attr:`closed` *before* it looks for registered
      calls, so either the call sees the handle closed (and backs out), or
      the closer sees the call (and leaves the free to it);
    - whoever finds the handle closed with no call registered takes the
      pointer out of the box with one ``pop()``: only one of them gets it,
      so the handle is freed exactly once.

    This costs about 0.1 us per call, a quarter of taking a
    :class:`threading.Lock` twice. Builds without a GIL (free-threaded
    CPython) use :class:`_LockedOwner`, which runs each step under a lock.

    An exception raised asynchronously (``KeyboardInterrupt``) between two
    steps can at worst leave a call counted: the handle is then never freed
    (a leak, never a use after free).
    """

    __slots__ = ("ptr", "closed", "_calls", "_box", "_free", "_name")

    def __init__(self, ptr: Any, free: Callable[[Any], None], name: str) -> None:
        self.ptr: Any = ptr
        #: Set by close(): no new call may borrow the handle.
        self.closed = False
        self._calls: List[None] = []
        self._box = [ptr]
        self._free = free
        self._name = name

    def enter(self) -> Any:
        """Borrows the handle for one call: the pointer, or ValueError if closed.

        Every enter() that returns must be followed by one leave(), in a
        ``finally`` (or use ``with owner as ptr:``).
        """
        self._calls.append(None)
        if self.closed:
            self.leave()
            raise ValueError(f"{self._name} is closed")
        return self.ptr

    def leave(self) -> None:
        """Ends a call begun by enter(); frees the handle if it was the last
        call in flight on a closed handle."""
        calls = self._calls
        calls.pop()
        if self.closed and not calls:
            self._free_once()

    def close(self) -> None:
        """Closes the handle: freed now, or by the last call in flight to leave."""
        self.closed = True
        if not self._calls:
            self._free_once()

    def _free_once(self) -> None:
        try:
            ptr = self._box.pop()
        except IndexError:
            return  # freed already, by another thread
        self.ptr = None
        self._free(ptr)

    @property
    def calls_in_flight(self) -> int:
        """The number of calls using the handle now (for tests and diagnostics)."""
        return len(self._calls)

    @property
    def freed(self) -> bool:
        """Whether the library handle was freed."""
        return not self._box

    def __enter__(self) -> Any:
        return self.enter()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.leave()


class _LockedOwner(_Owner):
    """:class:`_Owner` for builds without a GIL: each step under a lock.

    The free runs under the lock too (it is short and takes no other lock).
    """

    __slots__ = ("_lock",)

    def __init__(self, ptr: Any, free: Callable[[Any], None], name: str) -> None:
        super().__init__(ptr, free, name)
        self._lock = threading.Lock()

    def enter(self) -> Any:
        with self._lock:
            if self.closed:
                raise ValueError(f"{self._name} is closed")
            self._calls.append(None)
            return self.ptr

    def leave(self) -> None:
        with self._lock:
            _Owner.leave(self)

    def close(self) -> None:
        with self._lock:
            _Owner.close(self)


def _gil_enabled() -> bool:
    is_enabled = getattr(sys, "_is_gil_enabled", None)  # Python 3.13+
    return True if is_enabled is None else bool(is_enabled())


#: The owner type for this interpreter. (A free-threaded build may turn its
#: GIL on later, never off, so a choice made at import stays safe.)
OWNER: Type[_Owner] = _Owner if _gil_enabled() else _LockedOwner


class Handle:
    """Owns one library handle and frees it exactly once, when no call uses it.

    The handle is closed by :meth:`close`, at the end of a ``with`` block, or
    when the object is garbage collected or the interpreter exits (through
    :func:`weakref.finalize`), whichever comes first. After that, calls on
    the object (and calls that take it as an argument) raise
    :class:`ValueError`.

    Closing is safe while other threads are inside calls on the object: the
    calls already running finish normally, later ones raise
    :class:`ValueError`, and the library handle is freed when the last
    running call returns (:meth:`close` does not wait for it). At interpreter
    exit a handle still used by a daemon thread's call is therefore not
    freed: the process ends with it allocated, which is harmless.
    """

    __slots__ = ("_h", "_finalizer", "__weakref__")

    #: The C function that frees this kind of handle.
    _free: ClassVar[Any]

    def __init__(self) -> None:
        raise TypeError(f"{type(self).__name__} objects are made by its class methods")

    def _adopt(self, ptr: Any) -> None:
        """Takes ownership of ``ptr``, a non-NULL handle just returned by the library."""
        owner = self._h = OWNER(ptr, type(self)._free, type(self).__name__)
        # The finalizer holds the owner, never the object itself.
        self._finalizer = weakref.finalize(self, owner.close)

    @classmethod
    def _wrap(cls: Type[_H], ptr: Any) -> _H:
        """A new object owning ``ptr`` (bypasses ``__init__``)."""
        self = cls.__new__(cls)
        self._adopt(ptr)
        return self

    def _check_open(self) -> None:
        """ValueError if closed (for work that needs no library call)."""
        if self._h.closed:
            raise ValueError(f"{type(self).__name__} is closed")

    def close(self) -> None:
        """Closes the object; its handle is freed once no call is using it.

        Calling it again does nothing. Calls still running in other threads
        finish normally; later calls raise :class:`ValueError`.
        """
        self._finalizer()

    @property
    def closed(self) -> bool:
        """Whether the object was closed (the handle may still be in use by a
        call that began before)."""
        return self._h.closed

    def __enter__(self: _H) -> _H:
        self._check_open()
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
