"""What an operator expects of any command line: global options anywhere,
a word when no config file is read, help in plain words, quiet failures."""

from __future__ import annotations

import argparse
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from simsite import GEN1_IMAGE, GEN1_UUID

from rescue_flow import cli
from rescue_flow.simhost.host import offered_methods

pytestmark = pytest.mark.usefixtures("restore_logging")


# Global options ---------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["--config-file", "{conf}", "--debug", "status", "--json"],
    ["status", "--config-file", "{conf}", "--json", "--debug"],
    ["--debug", "status", "--json", "--config-file", "{conf}"],
])
def test_config_file_and_debug_work_before_or_after_the_command(config_file, capsys, argv):
    code = cli.main([word.replace("{conf}", config_file) for word in argv])

    assert code == 0
    assert capsys.readouterr().out.strip() == "[]"


def test_global_options_after_a_sim_subcommand_work_too(config_file, capsys):
    assert cli.main(["sim", "show", "--config-file", config_file]) == 0
    assert "instance-00000001" in capsys.readouterr().out


def test_config_files_before_and_after_the_command_are_all_read_in_order(
        config_file, tmp_path, capsys):
    later = tmp_path / "later.conf"
    later.write_text("[DEFAULT]\nhost = hv-later\n")

    code = cli.main(["--config-file", config_file, "worker", "--check",
                     "--config-file", str(later)])

    out = capsys.readouterr().out
    assert code in (0, 1)  # whether a broker answers does not matter here
    assert f"host hv-later, [hyperv] driver = simulated ({config_file}, {later})" in out


def test_a_command_without_a_config_file_says_which_defaults_it_uses(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)

    with pytest.raises(SystemExit):  # only the notice matters, not the command
        cli.main(["status", "--limit", "0"])
    assert capsys.readouterr().err.count("no --config-file") == 0  # usage errors first

    cli.main(["sim", "show"])  # reads, never creates, the default state folder

    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("rescue-flow sim show: no --config-file given: using the "
                             "defaults: [DEFAULT] host = ")
    assert "[DEFAULT] state_path = " in err[0] and "[hyperv] driver = oswin" in err[0]


# Help ---------------------------------------------------------------------------

def _parsers(parser: argparse.ArgumentParser, name: str
             ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_command_and_option_has_help_in_plain_words() -> None:
    problems = []
    for name, parser in _parsers(cli.build_parser(), "rescue-flow"):
        if not parser.description:
            problems.append(f"{name}: no description")
        for action in parser._actions:
            if not action.help and not isinstance(action, argparse._SubParsersAction):
                problems.append(f"{name} {'/'.join(action.option_strings) or action.dest}:"
                                " no help")
        shown = " ".join(parser.format_help().split())
        for markup in re.findall(r"`+|\b\w+(?:\.\w+)*\(\)|\b[a-z]+_[a-z_]+\b", shown):
            if re.search(rf"\] {re.escape(markup)}\b", shown):
                continue  # an option, as "[group] option_name"
            if markup in offered_methods():
                continue  # an os-win method, which sim fault and latency take
            problems.append(f"{name}: {markup!r} in its help")
    assert not problems, "\n".join(problems)


def test_reset_help_says_it_checks_nothing_on_the_host() -> None:
    reset = dict(_parsers(cli.build_parser(), "rescue-flow"))["rescue-flow reset"]
    shown = " ".join(reset.format_help().split())
    assert "It checks and changes nothing on the host" in shown


# Quiet failures -----------------------------------------------------------------

def test_a_quarantine_prints_its_outcome_and_where_to_look_not_a_traceback(
        seeded, config_file, capsys):
    seeded.sim.set_fault("soft_shutdown_vm", "permanent")
    seeded.sim.set_fault("set_vm_state", "permanent")

    code = cli.main(["--config-file", config_file, "run", "rescue", GEN1_UUID,
                     "--image", GEN1_IMAGE])

    printed = capsys.readouterr()
    assert code == 3
    assert "Traceback" not in printed.err and "Engine execution has failed" not in printed.err
    assert len(printed.err.splitlines()) <= 1  # the runner's own ERROR line
    lines = printed.out.splitlines()
    assert lines[-2].startswith(f"rescue {GEN1_UUID}: quarantined: StopInstance failed")
    assert lines[-1] == f"  details: rescue-flow status {GEN1_UUID}"


def test_a_failed_run_says_where_its_details_are(seeded, config_file, capsys):
    seeded.sim.set_fault("create_vm", "permanent", times=1)

    code = cli.main(["--config-file", config_file, "run", "rescue", GEN1_UUID,
                     "--image", GEN1_IMAGE])

    printed = capsys.readouterr()
    assert code == 1
    assert printed.out.splitlines()[-1] == f"  details: rescue-flow status {GEN1_UUID}"
    assert printed.err == ""


def test_the_demo_prints_no_transport_warnings(tmp_path, capsys) -> None:
    code = cli.main(["demo", "--keep", str(tmp_path / "demo")])

    printed: Any = capsys.readouterr()
    assert code == 0, printed.out
    assert printed.err == ""


# What no table lists ------------------------------------------------------------

@pytest.mark.parametrize(("raised", "code", "line"), [
    (RuntimeError("boom"), 1, "rescue-flow status: unexpected error: RuntimeError: boom; "
     "run the command again with --debug to see where"),
    (KeyboardInterrupt(), 130, "rescue-flow status: interrupted"),
])
def test_a_bug_or_ctrl_c_is_one_line_too(config_file, capsys, monkeypatch, raised, code,
                                         line):
    def status_command(conf: Any, args: Any) -> int:
        raise raised

    monkeypatch.setattr("rescue_flow.commands.history.status_command", status_command)

    assert cli.main(["--config-file", config_file, "status"]) == code
    assert capsys.readouterr().err == line + "\n"


def test_debug_shows_where_a_bug_is(config_file, capsys, monkeypatch):
    def status_command(conf: Any, args: Any) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr("rescue_flow.commands.history.status_command", status_command)

    assert cli.main(["--config-file", config_file, "status", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "in status_command" in err


def test_a_client_without_a_broker_says_so_in_one_line(tmp_path, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "rescue-flow.conf"
    config.write_text(f"[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:{port}/\n"
                      "[oslo_messaging_rabbit]\nrabbit_retry_interval = 1\n"
                      "rabbit_retry_backoff = 0\n")

    code = cli.main(["--config-file", str(config), "rescue", GEN1_UUID, "--host", "hv-1"])

    err = capsys.readouterr().err
    assert code == 4
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("rescue-flow rescue: could not send the request: ")
    assert "'rescue-flow worker --check' tests it" in err
