"""One generic registry backing datasets, models, regularizers and energy profiles."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from snnergy.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table that fails loudly on unknown or duplicate names.

    Args:
        kind: What the entries are ("regularizer", "dataset"...), used in error messages.

    Example:
        >>> COLORS: Registry[int] = Registry("color")
        >>> @COLORS.register("red")
        ... def red() -> int:
        ...     return 1
        >>> COLORS.names()
        ['red']
        >>> COLORS.get("red")()
        1
        >>> COLORS.get("blue")
        Traceback (most recent call last):
        ...
        snnergy.errors.ConfigError: unknown color 'blue'; known: red
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that adds an entry under ``name`` (snake_case or kebab-case)."""

        def add(obj: T) -> T:
            self.add(name, obj)
            return obj

        return add

    def add(self, name: str, obj: T) -> None:
        """Adds ``obj`` under ``name``; a name already taken is an error."""
        if name in self._entries:
            raise ConfigError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = obj

    def remove(self, name: str) -> T:
        """Removes and returns the entry called ``name`` (e.g. a plug-in's, or a test's)."""
        entry = self.get(name)
        del self._entries[name]
        return entry

    def get(self, name: str) -> T:
        """Returns the entry called ``name``, or raises listing the known names."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names())
            raise ConfigError(f"unknown {self.kind} '{name}'; known: {known}") from None

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
