"""Molecule scenario public_proxy (molecule/public_proxy), run by molecule_scenario.py."""

from molecule_scenario import molecule_test


def test_molecule_public_proxy(lab, tmp_path):
    molecule_test("public_proxy", tmp_path)
