"""Molecule scenario rotation (molecule/rotation), run by molecule_scenario.py."""

from molecule_scenario import molecule_test


def test_molecule_rotation(lab, tmp_path):
    molecule_test("rotation", tmp_path)
