"""Incremental Rerun bytes for a growing list of Steps — the live viewer of an interactive episode
(the app's Control tab: run / step / pause / reset over several clicks).

    feed = StepFeed()
    chunk = feed.pull(*session.snapshot())   # (episode_id, steps, cameras, action_names)
    # -> the RRD bytes of the Steps not logged yet (None when nothing is new), for gradio_rerun.Rerun(streaming=True)

One recording per episode: when `episode_key` changes (a reset), the old recording is dropped and a new
one (new recording id, default blueprint for the episode's cameras and joints) starts. Logging happens in
the caller's thread (a UI callback), never in the control loop, so the loop rate does not depend on it.
Unlike `LiveViewerStream` nothing is ever dropped: every Step of the episode reaches the viewer.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from molmoact2.models.base import Step


class StepFeed:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Any = None
        self._rec = self._stream = self._logger = None
        self.logged = 0

    def _start(self, key: Any, cameras: Sequence[str], joint_names: Sequence[str] | None) -> None:
        from molmoact2.viz.blueprint import default_blueprint
        from molmoact2.viz.logger import StepLogger, new_recording

        self._drop()
        self._rec = new_recording()
        self._stream = self._rec.binary_stream()
        self._rec.send_blueprint(default_blueprint(list(cameras) or ["main"], joint_names))
        self._logger = StepLogger(self._rec)
        self._key, self.logged = key, 0

    def _drop(self) -> None:
        if self._rec is not None:  # read what nobody will see, so Rerun does not warn about dropped data
            self._rec.flush()
            self._stream.read()
        self._rec = self._stream = self._logger = None

    def pull(self, episode_key: Any, steps: Sequence[Step], cameras: Sequence[str],
             joint_names: Sequence[str] | None = None) -> bytes | None:
        """Log `steps[self.logged:]` into the episode's recording; return the new bytes (None if none)."""
        with self._lock:
            if self._rec is None or episode_key != self._key:
                if not steps:  # a new episode with nothing to show yet: start its recording with its first Step
                    return None
                self._start(episode_key, cameras, joint_names)
            for step in steps[self.logged:]:
                self._logger.log(step)
                self.logged += 1
            self._rec.flush()
            return self._stream.read() or None

    def close(self) -> None:
        with self._lock:
            self._drop()
