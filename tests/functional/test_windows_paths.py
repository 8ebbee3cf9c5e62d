"""The simulated host speaks Windows paths by default, and POSIX ones on request."""

from __future__ import annotations

import json

import pytest
from simsite import GEN1_IMAGE, GEN1_UUID, GEN2_IMAGE, GEN2_UUID, make_site

from rescue_flow import config
from rescue_flow.outcome import Outcome


def _seed(site):
    site.sim.add_vm("instance-00000001", GEN1_UUID, GEN1_IMAGE, nics=1, config_drive=True)
    site.sim.add_vm("instance-00000002", GEN2_UUID, GEN2_IMAGE, nics=1)
    return site


@pytest.mark.parametrize("path_style", ["windows", "posix"])
@pytest.mark.parametrize(("uuid", "image"), [(GEN1_UUID, GEN1_IMAGE),
                                             (GEN2_UUID, GEN2_IMAGE)])
def test_rescue_and_unrescue_work_with_either_path_style(tmp_path, path_style, uuid,
                                                         image):
    site = _seed(make_site(str(tmp_path), path_style=path_style))
    before = site.view()

    assert site.rescue(uuid, image).outcome is Outcome.SUCCESS
    rescued = json.loads(site.view())
    assert site.unrescue(uuid).outcome is Outcome.SUCCESS

    assert site.view() == before
    disks = [path for path in rescued["files"] if "root-rescue" in path]
    assert len(disks) == 1
    if path_style == "windows":
        assert disks[0].startswith("C:\\OpenStack\\Instances\\instance-0000000")
    else:
        assert disks[0].startswith(str(tmp_path))


def test_the_default_configuration_rescues_on_the_simulated_host(seeded):
    assert seeded.conf.hyperv.instances_path == \
        config.make_conf().hyperv.instances_path == r"C:\OpenStack\Instances"

    result = seeded.rescue(GEN2_UUID)  # its own image, found in the cache

    assert result.outcome is Outcome.SUCCESS, result.reason


def test_an_instances_path_in_another_case_finds_the_image_cache(tmp_path):
    site = _seed(make_site(str(tmp_path), instances_path=r"c:\openstack\INSTANCES"))
    assert site.sim.instances_path == r"C:\OpenStack\Instances"

    result = site.rescue(GEN1_UUID, GEN1_IMAGE)

    assert result.outcome is Outcome.SUCCESS, result.reason
    assert site.unrescue(GEN1_UUID).outcome is Outcome.SUCCESS


def test_windows_paths_compare_ignoring_case_and_separator_style(site):
    paths = site.sim.pathutils
    image = rf"C:\OpenStack\Instances\_base\{GEN2_IMAGE}.vhdx"
    assert paths.exists(image.lower())
    assert paths.exists(image.replace("\\", "/"))
    assert paths.exists(r"C:\OpenStack\Instances\_base\..\_base" + "\\" + f"{GEN2_IMAGE}.vhdx")
    assert not paths.exists(r"D:\OpenStack\Instances\_base" + "\\" + f"{GEN2_IMAGE}.vhdx")


def test_an_extended_length_path_names_the_same_file_taken_literally(site):
    paths, vhd = site.sim.pathutils, site.sim.vhdutils
    image = rf"C:\OpenStack\Instances\_base\{GEN2_IMAGE}.vhdx"
    assert paths.exists("\\\\?\\" + image)
    assert vhd.get_vhd_format("\\\\?\\" + image) == "VHDX"
    # No normalisation behind \\?\: ".." and "/" are parts of names.
    assert not paths.exists("\\\\?\\" + image.replace(r"\_base", r"\_base\..\_base"))
    assert not paths.exists("\\\\?\\" + image.replace("\\", "/"))
    paths.remove("\\\\?\\" + image.upper())
    assert not paths.exists(image)


def test_a_host_refuses_an_instances_path_of_the_other_style(tmp_path):
    from rescue_flow.simhost import SimulatedHost

    with pytest.raises(ValueError, match="not a posix path"):
        SimulatedHost.init(str(tmp_path / "h.json"), r"C:\Instances", path_style="posix")
    with pytest.raises(ValueError, match="neither"):
        SimulatedHost.init(str(tmp_path / "h.json"), "relative\\instances")
