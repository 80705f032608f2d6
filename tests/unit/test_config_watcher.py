"""The config watcher applies an edit made while the daemon was starting (after the config was
read, before the file watching began): found by its modification time, not by an event."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from guardmail.config.settings import load_config
from guardmail.daemon.reload import ConfigWatcher

CONFIG = "state_dir: {root}/var\noffenders:\n  - name: Ex\n    addresses: [ex@example.net]\n"


def run_watcher(config: Path, *, loaded_ns: int, edit: bool) -> int:
    loaded = load_config(config)
    if edit:  # the edit lands after the read, before the watcher starts
        config.write_text(config.read_text() + "  - name: New\n    addresses: [new@example.net]\n")
        stamp = loaded_ns + 1_000_000_000
        os.utime(config, ns=(stamp, stamp))
    reloads = 0

    def reload() -> bool:
        nonlocal reloads
        reloads += 1
        return True

    async def main() -> None:
        task = asyncio.create_task(ConfigWatcher(lambda: loaded, reload, loaded_ns=loaded_ns).run())
        for _ in range(40):  # bounded: the debounce is 0.3 s
            await asyncio.sleep(0.05)
            if reloads:
                break
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    return reloads


def test_an_edit_made_while_starting_is_reloaded_at_once(tmp_path: Path) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(CONFIG.format(root=tmp_path))
    old = time.time_ns() - 60_000_000_000
    os.utime(config, ns=(old, old))
    assert run_watcher(config, loaded_ns=time.time_ns(), edit=True) == 1


def test_no_edit_since_the_read_means_no_reload(tmp_path: Path) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(CONFIG.format(root=tmp_path))
    old = time.time_ns() - 60_000_000_000
    os.utime(config, ns=(old, old))
    os.utime(tmp_path, ns=(old, old))
    assert run_watcher(config, loaded_ns=time.time_ns(), edit=False) == 0
