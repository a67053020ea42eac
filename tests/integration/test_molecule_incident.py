"""Molecule scenario incident (molecule/incident), run by molecule_scenario.py."""

from molecule_scenario import molecule_test


def test_molecule_incident(lab, tmp_path):
    molecule_test("incident", tmp_path)
