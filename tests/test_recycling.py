"""When a task process is recycled: its task count, its memory, said once."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from activities.worker._recycling import ProcessLife

if TYPE_CHECKING:
    import pytest


class TestProcessLife:
    def test_recycled_after_its_tasks_whichever_slot_ran_them(self) -> None:
        life = ProcessLife("process-1", max_tasks=3, max_memory=None)
        assert not life.task_done()
        assert not life.task_done()
        assert life.task_done()
        assert life.recycling.is_set()
        assert life.task_done()  # the slots that finish later retire too

    def test_recycled_above_its_memory(self) -> None:
        assert ProcessLife("process-1", max_tasks=None, max_memory=1).task_done()
        assert not ProcessLife("process-1", max_tasks=None, max_memory=2**50).task_done()

    def test_a_recycle_is_said_once(self, caplog: pytest.LogCaptureFixture) -> None:
        life = ProcessLife("process-1", max_tasks=None, max_memory=None)
        with caplog.at_level(logging.INFO, logger="activities.worker._recycling"):
            life.recycle("stuck")
            life.recycle("stuck again")
            assert life.task_done() is not False  # recycling: every slot retires
        assert [record.message for record in caplog.records] == ["stuck"]
