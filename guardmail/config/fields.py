"""Field types and helpers shared by the config models: non-empty text, directory paths, the TLS
mode, paths made absolute under the config's directory, the loopback test.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator

TlsMode = Literal["implicit", "starttls", "none"]


def nonempty(value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise ValueError(f"{value!r} is empty; write a value or leave the key out")
    return stripped


NonEmpty = Annotated[str, AfterValidator(nonempty)]


def written_path(value: object) -> object:
    """Refuse an empty path, which pydantic would read as ".", the start directory."""
    if isinstance(value, str) and not value.strip():
        raise ValueError(
            f"{value!r} is empty, which would mean the directory guardmail starts in; "
            "write the directory's path"
        )
    return value


# A directory guardmail acts in: an empty string is a slip, not the current directory.
DirPath = Annotated[Path, BeforeValidator(written_path)]


Model = TypeVar("Model", bound=BaseModel)


def with_absolute_files(model: Model, base: Path, *keys: str) -> Model:
    """``model`` with each of the path fields ``keys`` that is set made absolute under ``base``."""
    update = {k: base / v for k in keys if (v := getattr(model, k)) is not None}
    return model.model_copy(update=update)


def is_loopback(host: str) -> bool:
    """True for localhost and addresses in 127.0.0.0/8 or ::1 (no DNS lookup)."""
    if host.lower() in {"localhost", "localhost.", "ip6-localhost"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
