"""The suite's own guard against tests that fail at random."""

import datetime

import dagster as dg

from synth_assets_tests.conftest import dagster_context_left_open


def test_a_schedule_context_left_open_is_caught_and_one_closed_is_not() -> None:
    when = datetime.datetime(2026, 11, 24, 2, 0)
    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as closed:
            assert closed.instance is not None
    assert not dagster_context_left_open()

    with dg.instance_for_test() as instance:
        left_open = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        assert left_open.instance is not None
    del left_open  # freed after its instance closed, as the garbage collector would
    assert dagster_context_left_open()
    assert not dagster_context_left_open()  # cleared, so later modules are unaffected
