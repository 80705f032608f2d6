"""The config watcher applies an edit made while the daemon was starting (after the config was
read, before the file watching began): found by its modification time, not by an event. While
it watches, what matters is decided per event by the config running then: not a log written
beside it, a file a config loaded meanwhile names, a link beside it to a file that matters."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from guardmail.config.settings import LoadedConfig, load_config
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


def watch_while(config: Callable[[], LoadedConfig], act: Callable[[int], bool]) -> int:
    """Run a ConfigWatcher until ``act(reloads)`` says it is done (bounded); count reloads.

    ``act`` is first called once the observer runs (after one tick of the loop)."""
    reloads = 0

    def reload() -> bool:
        nonlocal reloads
        reloads += 1
        return True

    async def main() -> None:
        task = asyncio.create_task(ConfigWatcher(config, reload).run())
        try:
            for _ in range(200):  # bounded: the debounce is 0.3 s
                await asyncio.sleep(0.05)
                if act(reloads):
                    return
            raise AssertionError(f"never done; {reloads} reloads")
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    asyncio.run(main())
    return reloads


def test_lines_written_to_a_log_beside_the_config_never_reload_it(tmp_path: Path) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(CONFIG.format(root=tmp_path))
    loaded = load_config(config)
    steps = iter(range(1000))

    def act(reloads: int) -> bool:
        step = next(steps)
        if step < 10:
            with (tmp_path / "guardmail.log").open("a") as log:
                log.write(f"event {step}\n")  # the daemon's own log, as the benches keep it
            return False
        if step == 10:
            assert reloads == 0
            config.write_text(
                config.read_text() + "  - name: New\n    addresses: [n@example.net]\n"
            )
        return reloads > 0

    assert watch_while(lambda: loaded, act) == 1


def test_a_file_a_config_loaded_meanwhile_names_is_watched_for_at_once(tmp_path: Path) -> None:
    """A SIGHUP or a report loads a config while the observer runs: its files count from then."""
    config = tmp_path / "guardmail.yaml"
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "a.yaml").write_text("offenders: []\n")
    (tmp_path / "b.yaml").write_text("offenders: []\n")
    first = (CONFIG + "offenders_files: [{root}/lists/a.yaml]\n").format(root=tmp_path)
    config.write_text(first)
    current = [load_config(config)]
    second = (CONFIG + "offenders_files: [{root}/lists/a.yaml, {root}/b.yaml]\n").format(
        root=tmp_path
    )
    config.write_text(second)
    steps = iter(range(1000))

    def act(reloads: int) -> bool:
        step = next(steps)
        if step <= 8:
            assert reloads == 0, "b.yaml mattered before a config named it"
        if step == 0:
            (tmp_path / "b.yaml").write_text("offenders: []\n# 1\n")
        elif step == 8:
            current[0] = load_config(config)  # as SIGHUP does, the observer still running
            (tmp_path / "b.yaml").write_text("offenders: []\n# 2\n")
        return reloads > 0

    assert watch_while(lambda: current[0], act) == 1


def test_a_link_beside_the_config_to_an_offenders_file_counts_as_that_file(tmp_path: Path) -> None:
    config = tmp_path / "guardmail.yaml"
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "ex.yaml").write_text("offenders: []\n")
    config.write_text((CONFIG + "offenders_files: [{root}/lists/ex.yaml]\n").format(root=tmp_path))
    loaded = load_config(config)
    steps = iter(range(1000))

    def act(reloads: int) -> bool:
        if next(steps) == 0:
            (tmp_path / "current.yaml").symlink_to(tmp_path / "lists" / "ex.yaml")
        return reloads > 0

    assert watch_while(lambda: loaded, act) == 1
