# Type stubs for the parts of google-re2 (import re2) that guardmail uses; the package ships none.
from typing import Any

class error(Exception): ...

class Options:
    max_mem: int
    longest_match: bool
    log_errors: bool
    literal: bool
    never_nl: bool
    dot_nl: bool
    never_capture: bool
    case_sensitive: bool
    perl_classes: bool
    word_boundary: bool
    one_line: bool
    posix_syntax: bool
    def __init__(self) -> None: ...

class _Match:
    def group(self, *groups: int | str) -> Any: ...
    def span(self, group: int = 0) -> tuple[int, int]: ...
    def start(self, group: int = 0) -> int: ...
    def end(self, group: int = 0) -> int: ...

class _Regexp:
    @property
    def pattern(self) -> str: ...
    def search(
        self, text: str, pos: int | None = None, endpos: int | None = None
    ) -> _Match | None: ...
    def match(
        self, text: str, pos: int | None = None, endpos: int | None = None
    ) -> _Match | None: ...
    def fullmatch(
        self, text: str, pos: int | None = None, endpos: int | None = None
    ) -> _Match | None: ...

def compile(pattern: str | _Regexp, options: Options | None = None) -> _Regexp: ...
def escape(pattern: str) -> str: ...
