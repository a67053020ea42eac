# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The SPIFFE ID allow-list of nginx-federation: patterns, their regexes (the nginx map) and what they let through."""

from __future__ import annotations

import re

import pytest

from ansible_collections.theprotocol.operator.plugins.module_utils import _spiffe_authz as sa

DEFAULT = ['spiffe://example.com/service/registry-*']


@pytest.mark.parametrize('spiffe_id', [
    'spiffe://example.com/service/registry-acme',
    'spiffe://example.com/service/registry-other',
    'spiffe://example.com/service/registry-',
    'spiffe://example.com/service/registry-a.b_c-9',
])
def test_default_lets_registries_through(spiffe_id):
    assert sa.allowed(DEFAULT, spiffe_id)


@pytest.mark.parametrize('spiffe_id', [
    'spiffe://example.com/spire/agent/x509pop/0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33',
    'spiffe://example.com/service/not-a-registry',
    'spiffe://example.com/service/registry-acme/extra',      # * stays within one segment
    'spiffe://other.org/service/registry-acme',              # another trust domain
    'spiffe://example.com/service/registry-acme\n',          # a trailing newline is no SPIFFE ID
    'spiffe://example.com/service/registryXacme',            # '.' and '-' are literal
    'spiffe://example.com/service/../service/registry-a',
    'spiffe://EXAMPLE.com/service/registry-acme',
    '',
    None,
])
def test_default_refuses_everything_else(spiffe_id):
    assert not sa.allowed(DEFAULT, spiffe_id)


def test_double_star_crosses_segments_and_widening_lets_the_agent_through():
    wide = ['spiffe://example.com/**']
    assert sa.allowed(wide, 'spiffe://example.com/spire/agent/x509pop/abc')
    assert sa.allowed(['spiffe://example.com/service/**'], 'spiffe://example.com/service/a/b')
    assert not sa.allowed(wide, 'spiffe://other.org/service/registry-acme')


def test_regexes_are_anchored_and_safe_for_an_nginx_map():
    regexes = sa.regexes(DEFAULT + ['spiffe://example.com/ops/**', DEFAULT[0]])
    assert regexes == [r'^spiffe://example\.com/service/registry-[A-Za-z0-9._-]*$',
                       r'^spiffe://example\.com/ops/[A-Za-z0-9._/-]*$']
    for regex in regexes:
        # nothing that ends an nginx string, a directive or a block, nor a JSON string
        assert not set(regex) & set('"\';{} \n\\') - {'\\'}
        assert re.compile(regex)


@pytest.mark.parametrize('patterns, words', [
    ([], 'is empty'),
    ('spiffe://example.com/service/registry-*', 'must be a list'),
    ([42], 'is not a string'),
    (['http://example.com/service/registry-*'], 'is not spiffe://'),
    (['spiffe://example.com'], 'is not spiffe://'),
    (['spiffe://example.com/'], 'is not spiffe://'),
    (['spiffe://Example.com/service/registry-*'], 'is not spiffe://'),
    (['spiffe://*.com/service/registry-*'], 'is not spiffe://'),
    (['spiffe://example.com/service/registry-*\n'], 'is not spiffe://'),
    (['spiffe://example.com/service/registry-*"; }'], 'is not spiffe://'),
    (['spiffe://example.com/service/a b'], 'is not spiffe://'),
    (['spiffe://example.com/service/../registry-*'], '".." path segment'),
    (['spiffe://example.com/***'], '***'),
    (['spiffe://example.com/' + 'a' * 2100], 'longer than'),
])
def test_bad_allow_lists_are_refused_naming_the_entry(patterns, words):
    with pytest.raises(sa.AllowListError) as info:
        sa.validate(patterns)
    assert words in str(info.value)


def test_every_bad_entry_is_named_once():
    with pytest.raises(sa.AllowListError) as info:
        sa.regexes(DEFAULT + ['bad-one', 'spiffe://x/../y'])
    text = str(info.value)
    assert "'bad-one'" in text and "'spiffe://x/../y'" in text and 'registry-*' not in text.split(':', 1)[1]
