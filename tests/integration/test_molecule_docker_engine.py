"""Molecule scenario docker_engine (molecule/docker_engine), run by molecule_scenario.py."""

from molecule_scenario import molecule_test


def test_molecule_docker_engine(lab, tmp_path):
    molecule_test("docker_engine", tmp_path)
