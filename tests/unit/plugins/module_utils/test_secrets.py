# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib
import re
import secrets as std_secrets
import string

import pytest

from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets as s


# ----------------------------------------------------------------------------- generate

@pytest.mark.parametrize('nbytes, length', [(16, 22), (32, 43), (48, 64), (512, 683)])
def test_generate_secret_length_and_charset(nbytes, length):
    value = s.generate_secret(nbytes)
    assert len(value) == length
    assert s.GENERATED_SECRET_RE.match(value)
    assert '=' not in value  # no base64 padding


def test_generate_secret_default_and_unique():
    values = set(s.generate_secret() for dummy in range(200))
    assert len(values) == 200
    assert all(len(v) == 43 for v in values)


def test_generated_secrets_are_never_weak():
    for dummy in range(500):
        value = s.generate_secret(s.MIN_SECRET_BYTES)
        assert s.weakness(value) is None, value


@pytest.mark.parametrize('nbytes', [0, 15, 513, -1, True, '32', 32.0, None])
def test_generate_secret_bad_length(nbytes):
    with pytest.raises(s.SecretError, match='between 16 and 512'):
        s.generate_secret(nbytes)


# ----------------------------------------------------------------------------- fingerprint

def test_fingerprint():
    assert s.fingerprint('hunter2') == hashlib.sha256(b'hunter2').hexdigest()[:12]
    assert s.fingerprint(b'hunter2') == s.fingerprint('hunter2')
    assert re.match(r'^[0-9a-f]{12}$', s.fingerprint(s.generate_secret()))
    assert s.fingerprint(None) is None
    assert s.fingerprint('a') != s.fingerprint('b')


# ----------------------------------------------------------------------------- entropy

def test_entropy_estimate():
    assert s.estimate_entropy_bits('') == 0
    assert s.estimate_entropy_bits('a' * 40) == 0
    assert s.estimate_entropy_bits('ab' * 8) == pytest.approx(16)
    # capped by the character classes: 16 distinct lowercase letters -> 16 * log2(16) = 64 (pool 26 is larger)
    assert s.estimate_entropy_bits('abcdefghijklmnop') == pytest.approx(64)
    # 2 distinct digits: Shannon 1 bit/char
    assert s.estimate_entropy_bits('0101010101') == pytest.approx(10)
    assert s.estimate_entropy_bits(s.generate_secret()) > 150


# ----------------------------------------------------------------------------- weakness

@pytest.mark.parametrize('value, reason', [
    (None, 'is empty'),
    ('', 'is empty'),
    ('postgres', 'is a well-known default value'),
    ('Postgres', 'is a well-known default value'),
    ('password', 'is a well-known default value'),
    ('changeme', 'is a well-known default value'),
    ('admin', 'is a well-known default value'),
    ('redis', 'is a well-known default value'),
    ('secret', 'is a well-known default value'),
    ('example', 'is a well-known default value'),
    ('123456', 'is a well-known default value'),
    (' changeme ', 'is a well-known default value'),
    ('P@ssw0rd', 'well-known default value with only digits'),
    ('P@ssw0rd1!', 'well-known default value with only digits'),
    ('postgres12345678901', 'well-known default value with only digits'),
    ('Password1234567!', 'well-known default value with only digits'),
    ('changeme!!', 'well-known default value with only digits'),
    ('postgrespostgres', 'well-known default value with only digits, symbols, repeats'),
    ('REDISREDISREDISREDIS', 'well-known default value with only digits, symbols, repeats'),
    ('short-but-random', None),  # 16 characters, varied: not weak by these rules
    ('x7Kq9mZ2pL4vT8w', 'is shorter than 16 characters'),
    ('aaaaaaaaaaaaaaaaaaaa', 'is a short pattern repeated'),
    ('abababababababababab', 'is a short pattern repeated'),
    ('k9Zk9Zk9Zk9Zk9Zk9Zk9Z', 'is a short pattern repeated'),
    ('abcdefghijklmnopqrs', 'is a keyboard or alphabet sequence'),
    ('1234567890123456', 'is a keyboard or alphabet sequence'),
    ('zyxwvutsrqponmlkj', 'is a keyboard or alphabet sequence'),
    ('aaaaaaaaaaaaaaaaaaab', 'has low entropy'),
    ('1111111122222222', 'has low entropy'),
    ('x7Kq9mZ2pL4vT8wR', None),
    ('correct-horse-battery-staple', None),
])
def test_weakness(value, reason):
    found = s.weakness(value)
    if reason is None:
        assert found is None
        assert s.is_weak(value) is False
    else:
        assert found is not None and reason in found, found
        assert s.is_weak(value) is True
        if value and len(value.strip()) > 3:
            assert value.strip() not in found  # the reason never quotes the value


def test_weakness_key_name():
    assert s.weakness('postgres_password_x', 'POSTGRES_PASSWORD_X') == 'equals its own key name'
    assert s.weakness('internalapikey', 'INTERNAL_API_KEY') == 'equals its own key name'
    assert s.weakness('internal-api-key', 'INTERNAL_API_KEY') == 'equals its own key name'
    assert s.weakness(s.generate_secret(), 'INTERNAL_API_KEY') is None


def test_weakness_rejects_non_string():
    with pytest.raises(s.SecretError, match='must be a string'):
        s.weakness(12345678901234567890)


def test_random_human_passwords_mostly_pass():
    # 20 random characters of letters and digits is what a careful operator types: never judged weak.
    alphabet = string.ascii_letters + string.digits
    for dummy in range(300):
        value = ''.join(std_secrets.choice(alphabet) for dummy in range(20))
        assert s.weakness(value) is None, value
