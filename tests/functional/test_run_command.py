"""`rescue-flow run`: steps as they run and revert, and exit codes that scripts can use."""

from __future__ import annotations

from simsite import GEN1_IMAGE, GEN1_UUID

from rescue_flow import cli


def _run(config_file, *args):
    return cli.main(["--config-file", config_file, "run", *args])


def test_run_rescue_prints_each_step_and_exits_zero(config_file, capsys):
    code = _run(config_file, "rescue", GEN1_UUID, "--image", GEN1_IMAGE)

    out = capsys.readouterr().out
    assert code == 0
    assert "  StopInstance: RUNNING" in out
    assert "  StartRescueVM: SUCCESS" in out
    assert out.strip().endswith(f"rescue {GEN1_UUID}: success")


def test_run_rescue_of_a_rescued_instance_has_nothing_to_do_and_exits_zero(
        config_file, capsys):
    _run(config_file, "rescue", GEN1_UUID, "--image", GEN1_IMAGE)
    capsys.readouterr()

    code = _run(config_file, "rescue", GEN1_UUID, "--image", GEN1_IMAGE)

    assert code == 0
    assert "nothing_to_do: the instance is already rescued" in capsys.readouterr().out


def test_run_prints_the_reverts_and_exits_one_when_a_step_fails(seeded, config_file,
                                                                capsys):
    seeded.sim.set_fault("create_vm", "permanent", times=1)

    code = _run(config_file, "rescue", GEN1_UUID, "--image", GEN1_IMAGE)

    out = capsys.readouterr().out
    assert code == 1
    assert "  CreateRescueVM: FAILURE" in out
    assert "  StopInstance: REVERTED" in out
    assert "failed: CreateRescueVM failed: create_vm failed" in out
    assert "reverted: CreateRescueVM, CreateRescueDisk, StopInstance" in out


def test_run_with_a_bad_uuid_exits_two_with_the_reason(config_file, capsys):
    code = _run(config_file, "rescue", "../../etc")

    assert code == 2
    assert "instance uuid is not a UUID" in capsys.readouterr().err


def test_run_on_a_quarantined_instance_exits_three(seeded, config_file, capsys):
    seeded.sim.set_fault("soft_shutdown_vm", "permanent")
    seeded.sim.set_fault("set_vm_state", "permanent")
    assert _run(config_file, "rescue", GEN1_UUID, "--image", GEN1_IMAGE) == 3
    seeded.sim.clear_faults()

    code = _run(config_file, "unrescue", GEN1_UUID)

    assert code == 3
    assert "is quarantined" in capsys.readouterr().out
