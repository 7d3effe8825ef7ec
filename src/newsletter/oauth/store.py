"""Where a sign-in's refresh token is kept: the OS keyring, else a private file of the user's.

The keyring (`keyring`, from the `oauth` extra) is used when it has a working
backend. Otherwise the sign-in is a JSON file in the user's configuration
folder (`$XDG_CONFIG_HOME/newsletter/logins/`, `%APPDATA%` on Windows), made
`0600` in a `0700` folder, written through no link, and refused on reading when
anyone but its owner may read it. Never in the campaign folder: a folder is
shared, zipped and committed; a refresh token there would travel with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import stat
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from newsletter.errors import TokenError

KEYRING_SERVICE = "newsletter"


@dataclass(frozen=True)
class Login:
    """Everything needed to renew an access token without the user: one provider, one mailbox."""

    provider: str
    user: str
    token_endpoint: str
    client_id: str
    refresh_token: str = field(repr=False)
    scope: str | None = None
    client_secret: str | None = field(default=None, repr=False)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, where: str) -> Login:
        try:
            data = json.loads(text)
            return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})
        except (ValueError, TypeError):
            raise TokenError(f"{where}: not a sign-in this version can read; run the login again") from None


class Store(Protocol):
    name: str

    def load(self, provider: str, user: str) -> Login | None: ...

    def save(self, login: Login) -> None: ...

    def delete(self, provider: str, user: str) -> bool: ...


def _key(provider: str, user: str) -> str:
    return f"{provider}:{user.lower()}"


class KeyringStore:
    """The OS keyring (Keychain, Credential Manager, Secret Service) via `keyring`."""

    name = "the system keyring"

    def __init__(self, keyring: Any) -> None:
        self._keyring = keyring

    def load(self, provider: str, user: str) -> Login | None:
        text = self._keyring.get_password(KEYRING_SERVICE, _key(provider, user))
        return Login.from_json(text, where=self.name) if text else None

    def save(self, login: Login) -> None:
        self._keyring.set_password(KEYRING_SERVICE, _key(login.provider, login.user), login.to_json())

    def delete(self, provider: str, user: str) -> bool:
        try:
            self._keyring.delete_password(KEYRING_SERVICE, _key(provider, user))
        except self._keyring.errors.PasswordDeleteError:
            return False
        return True


class FileStore:
    """One `0600` JSON file per sign-in in a `0700` folder of the user's."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = str(root)

    def path(self, provider: str, user: str) -> Path:
        digest = hashlib.sha256(_key(provider, user).encode("utf-8")).hexdigest()[:16]
        return self.root / f"{provider}-{digest}.json"

    def load(self, provider: str, user: str) -> Login | None:
        path = self.path(provider, user)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TokenError(f"{path}: cannot be read ({exc.strerror}); run the login again") from None
        with os.fdopen(fd, "r", encoding="utf-8") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise TokenError(
                    f"{path}: others may read this file (mode {stat.S_IMODE(mode):o}), so the sign-in in it "
                    f"is not used; make it private (chmod 600 {path}) or run the login again"
                )
            return Login.from_json(stream.read(), where=str(path))

    def save(self, login: Login) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(OSError):
            os.chmod(self.root, 0o700)
        path = self.path(login.provider, login.user)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(temporary, flags, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(login.to_json())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise

    def delete(self, provider: str, user: str) -> bool:
        try:
            self.path(provider, user).unlink()
        except FileNotFoundError:
            return False
        return True


def config_dir() -> Path:
    """The user's configuration folder for this program."""
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        base = Path(os.environ["APPDATA"])
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "newsletter"


def _usable_keyring() -> Any | None:
    """The `keyring` module when it is installed and has a backend that stores something."""
    try:
        keyring = importlib.import_module("keyring")
    except ImportError:
        return None
    backend = keyring.get_keyring()
    module = type(backend).__module__
    if module.endswith((".fail", ".null")) or getattr(backend, "priority", 0) <= 0:
        return None
    return keyring


def default_store() -> Store:
    keyring = _usable_keyring()
    return KeyringStore(keyring) if keyring is not None else FileStore(config_dir() / "logins")
