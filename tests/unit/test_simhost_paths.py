"""How the simulated host names files: Windows paths by default, POSIX on request."""

from __future__ import annotations

import pytest

from rescue_flow.simhost import paths


@pytest.mark.parametrize(("path", "style"), [
    (r"C:\OpenStack\Instances", "windows"),
    ("c:/openstack/instances", "windows"),
    (r"\\server\share\instances", "windows"),
    ("\\\\?\\C:\\OpenStack\\Instances", "windows"),
    ("/sim/instances", "posix"),
    ("instances", None),
    (r"C:relative", None),
    ("", None),
])
def test_the_style_of_an_instances_path(path, style):
    assert paths.style_of(path) == style


@pytest.mark.parametrize(("a", "b"), [
    (r"C:\OpenStack\Instances\vm\root.vhdx", "c:/openstack/INSTANCES/vm/ROOT.VHDX"),
    (r"C:\OpenStack\Instances\vm\root.vhdx", r"C:\OpenStack\Instances\x\..\vm\root.vhdx"),
    (r"C:\OpenStack\Instances\vm\root.vhdx", "\\\\?\\C:\\OpenStack\\Instances\\vm\\root.vhdx"),
    (r"\\srv\share\vm\root.vhdx", "\\\\?\\UNC\\srv\\share\\vm\\root.vhdx"),
])
def test_windows_names_of_one_file_share_a_key(a, b):
    assert paths.key("windows", a) == paths.key("windows", b)


def test_an_extended_length_path_is_taken_literally():
    literal = "\\\\?\\C:\\OpenStack\\x\\..\\vm"
    assert paths.key("windows", literal) != paths.key("windows", r"C:\OpenStack\vm")
    assert paths.normalise("windows", literal) == literal


def test_posix_keys_ignore_case_but_not_drive_letters():
    assert paths.key("posix", "/Sim/Instances/") == paths.key("posix", "/sim/instances")
    assert paths.module("posix").join("/sim", "vm") == "/sim/vm"
    assert paths.module("windows").join("C:\\sim", "vm") == "C:\\sim\\vm"


def test_a_new_host_checks_its_instances_path_against_the_style():
    assert paths.check_instances_path(r"C:\I", None) == "windows"
    assert paths.check_instances_path("/i", "posix") == "posix"
    with pytest.raises(ValueError, match="not a windows path"):
        paths.check_instances_path("/i", "windows")
