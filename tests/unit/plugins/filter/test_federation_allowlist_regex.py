# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The filter that turns operator_stack_federation_allowed_spiffe_ids into the nginx map's regexes."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.theprotocol.operator.plugins.filter.federation_allowlist_regex import (
    FilterModule, federation_allowlist_regex)


def test_filter_is_registered_and_returns_regexes():
    assert FilterModule().filters()['federation_allowlist_regex'] is federation_allowlist_regex
    assert federation_allowlist_regex(['spiffe://example.com/service/registry-*']) == [
        r'^spiffe://example\.com/service/registry-[A-Za-z0-9._-]*$']


def test_filter_error_names_the_variable_and_the_entry():
    with pytest.raises(AnsibleFilterError) as info:
        federation_allowlist_regex(['spiffe://example.com/x"; return 200;'])
    assert 'operator_stack_federation_allowed_spiffe_ids' in str(info.value)
    assert 'return 200' in str(info.value)


def test_filter_error_names_the_variable_given():
    with pytest.raises(AnsibleFilterError) as info:
        federation_allowlist_regex([], 'public_proxy_federation_allowed_spiffe_ids')
    assert str(info.value).startswith('public_proxy_federation_allowed_spiffe_ids: ')
