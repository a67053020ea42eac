"""Molecule scenario operator_onboarding (molecule/operator_onboarding), run by molecule_scenario.py."""

from molecule_scenario import molecule_test


def test_molecule_operator_onboarding(lab, tmp_path):
    molecule_test("operator_onboarding", tmp_path)
