"""The lookup theprotocol.operator.credentials: the keys of the credential registry, for the roles."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleLookupError

from ansible_collections.theprotocol.operator.plugins.lookup.credentials import LookupModule
from ansible_collections.theprotocol.operator.plugins.module_utils import _credentials as c


def test_the_lookup_gives_the_registry():
    lookup = LookupModule()
    assert lookup.run([], variables={}) == list(c.KEYS)
    assert lookup.run([], variables={}, rotatable=True) == list(c.ROTATABLE)
    assert lookup.run([], variables={}, rotatable='yes') == list(c.ROTATABLE)
    with pytest.raises(AnsibleLookupError, match='takes no terms'):
        lookup.run(['POSTGRES_PASSWORD'], variables={})
    with pytest.raises(AnsibleLookupError, match='no option secret'):
        lookup.run([], variables={}, secret=True)
