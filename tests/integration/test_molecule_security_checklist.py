"""Molecule scenario security_checklist (molecule/security_checklist), run by molecule_scenario.py."""

from molecule_scenario import molecule_test


def test_molecule_security_checklist(lab, tmp_path):
    molecule_test("security_checklist", tmp_path)
