"""Molecule scenario operator_stack (molecule/operator_stack), run by molecule_scenario.py."""

from molecule_scenario import molecule_test


def test_molecule_operator_stack(lab, tmp_path):
    molecule_test("operator_stack", tmp_path)
