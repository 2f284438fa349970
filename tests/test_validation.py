"""Cycle-model validation: the hub model against the RTL hub, the channel model against the RTL queue."""

import pytest

from pimphony.cli.main import main
from pimphony.experiments.validation import Outcome, Point, run_point, statistics, sweep
from pimphony.model.isa import Instruction, Opcode
from pimphony.model.perf.hub import phases_of


def test_sweep_has_at_least_30_points_over_every_axis():
    points = sweep()
    assert len(points) >= 30
    for axis in ("channels", "head_dim", "group", "length", "policy"):
        assert len({getattr(p, axis) for p in points}) >= 2, axis


def test_phases_cut_where_sv_changes_and_keep_dropped_entries():
    act = Instruction(Opcode.ACT, ch_mask=1)
    assert phases_of([(act, False), (None, False), (act, True), (None, True), (act, False)]) == [
        [act, None], [act, None], [act]]


def test_statistics():
    p = Point(4, 64, 1, 300, "DCS")
    stats = statistics([Outcome(p, 100, 102, 1, True), Outcome(p, 200, 198, 1, True), Outcome(p, 300, 300, 1, True)])
    assert stats["mae"] == pytest.approx((0.02 + 0.01) / 3)
    assert stats["max"] == pytest.approx(0.02)
    assert stats["r2"] == pytest.approx(1 - 8 / 20000)


@pytest.mark.parametrize("point", [Point(4, 64, 2, 1029, "STATIC"), Point(4, 64, 1, 1029, "DCS"),
                                   Point(8, 128, 4, 517, "PINGPONG")], ids=lambda p: p.label)
def test_model_predicts_the_rtl_hub_and_queue_cycle_for_cycle(point):
    """The hub model gives the RTL hub's cycles exactly, the channel model the queue's issue cycles. The
    static point needs the multicast's coupling: channel 0 refreshes while its queue fills, and the
    sequencer holds the other channels' supply (147 cycles of the 4,548)."""
    o = run_point(point)
    assert o.channel_exact, f"{point.label}: the channel model and the RTL queue differ"
    assert o.model == o.rtl, f"{point.label}: RTL {o.rtl} cycles, model {o.model}"
    assert o.channel_commands > 0


def test_cli_writes_the_table_and_plot(tmp_path, capsys):
    assert main(["reproduce", "validation", "--quick", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "validation.md").read_text()
    assert "Hub level: MAE" in text and "over 3 points, 3 of them equal to the cycle" in text
    assert "Channel level: 3/3 points equal cycle for cycle" in text
    assert text.count("| 4ch d64 g2 L300 ") == 3 and (tmp_path / "validation.png").is_file()
    assert "Hub level: MAE" in capsys.readouterr().out


def test_prediction_follows_the_documented_pipeline():
    """One ACT in QK^T, one PRE in SV on one channel: the first fetch 1 cycle after the offer, the
    instruction presented 2 cycles later and its command arriving the cycle after, issued 3 cycles after
    it entered the empty queue (the head's registered read, then the registered decision); the SV
    phase's first arrival ``epu_cycles + barrier`` cycles after the ACT completed (latency 1); the PRE
    waits for the ACT's nRAS, carried across the barrier."""
    import dataclasses

    from pimphony.model.config import ModuleOrg, TimingPreset
    from pimphony.model.perf.hub import HubPipeline, predict_run
    from pimphony.model.queue import Policy, QueueConfig

    aim = TimingPreset.load("aim-gddr6")
    org = dataclasses.replace(ModuleOrg.load("aimx-16ch"), channels=1)
    cfg = dataclasses.replace(QueueConfig.rtl_default(org), policy=Policy.DCS)
    fetched = [(Instruction(Opcode.ACT, ch_mask=1), False), (Instruction(Opcode.PRE, ch_mask=1), True)]
    p = predict_run(fetched, 1, aim, cfg, start=0, epu_cycles=2)
    pipe = HubPipeline()
    arrive = pipe.run_to_fetch + pipe.fetch_to_present + 1
    assert p.phases[0] == (arrive, arrive + 3 + 1)      # into an empty queue: issued 3 cycles later, latency 1
    assert p.phases[1][0] == p.phases[0][1] + 2 + pipe.barrier
    assert p.phases[1][1] >= arrive + 3 + aim.nRAS                  # PRE no earlier than nRAS after the ACT
    assert p.cycles == p.phases[1][1] + pipe.finish
