# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib
import re
import secrets as std_secrets
import string
from pathlib import Path

import jinja2
import pytest
import yaml

from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist
from ansible_collections.theprotocol.operator.plugins.module_utils import _credentials
from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _incident
from ansible_collections.theprotocol.operator.plugins.module_utils import _redact
from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets as s
from ansible_collections.theprotocol.operator.plugins.modules import operator_env


# ----------------------------------------------------------------------------- generate

@pytest.mark.parametrize('nbytes, length', [(16, 22), (32, 43), (48, 64), (512, 683)])
def test_generate_secret_length_and_charset(nbytes, length):
    value = s.generate_secret(nbytes)
    assert len(value) == length
    assert s.GENERATED_SECRET_RE.match(value)
    assert '=' not in value  # no base64 padding


def test_generate_secret_alphabet():
    assert s.GENERATED_SECRET_RE.match(s.generate_secret(32, s.URLSAFE_BASE64))
    with pytest.raises(s.SecretError, match='Unknown secret alphabet'):
        s.generate_secret(32, 'no-such-alphabet')


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


# ----------------------------------------------------------------------------- the one masking rule

ROLE = Path(__file__).resolve().parents[4] / 'roles' / 'operator_stack'


def role_settings():
    """The settings the operator_stack role writes to .env.operator (vars/main.yml rendered with its defaults)."""
    variables = yaml.safe_load((ROLE / 'defaults' / 'main.yml').read_text())
    variables.update(operator_stack_operator_name='operator5', operator_stack_registry_name='registry5',
                     operator_stack_registry_did='did:web:registry5.lab.example.com',
                     operator_stack_eventstore_url='https://eventstore.lab.example.com')
    base = yaml.safe_load((ROLE / 'vars' / 'main.yml').read_text())['_operator_stack_base_settings']
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return dict((key, env.from_string(template).render(**variables)) for key, template in base.items())


@pytest.fixture
def role_env(tmp_path):
    """A real .env.operator as the role writes it (operator_env with the role's settings and secrets)."""
    path = tmp_path / '.env.operator'
    params = dict(path=str(path), settings=role_settings(), secrets=list(_credentials.KEYS), secret_length=32,
                  rotate=[], backup=True, backup_keep=10, mode='0600', owner=None, group=None)
    operator_env.run(params)
    return str(path), params


def test_public_keys_are_the_settings_of_the_role():
    base = yaml.safe_load((ROLE / 'vars' / 'main.yml').read_text())['_operator_stack_base_settings']
    assert set(base) == s.PUBLIC_ENV_KEYS, 'roles/operator_stack/vars/main.yml _operator_stack_base_settings'
    assert _incident.PUBLIC_ENV_KEYS is s.PUBLIC_ENV_KEYS is _redact.PUBLIC_ENV_KEYS


def test_is_secret():
    assert s.is_secret('POSTGRES_PASSWORD', 'x') and s.is_secret('CUSTOM_THING', 'also-secret-by-default')
    assert s.is_secret('LOG_LEVEL', 'debug')  # not declared public: secret
    assert not s.is_secret('OPERATOR_NAME', 'operator5') and not s.is_secret('EVENTSTORE_URL', 'https://e.example')
    assert not s.is_secret('POSTGRES_PASSWORD', '') and not s.is_secret('POSTGRES_PASSWORD', None)
    assert not s.is_secret('X', 'v', public_keys=frozenset(['X']))


def test_secret_values_of_the_real_env_file(role_env):
    path, dummy = role_env
    envfile = _envfile.EnvFile.from_bytes(open(path, 'rb').read())
    credentials = [envfile.value(k) for k in _credentials.KEYS]
    assert all(credentials)
    # Every secret is a credential of the registry; every public setting is kept (none is secret).
    assert s.secret_values(envfile) == credentials
    assert _incident.secret_values(envfile) == credentials
    assert s.secret_values(dict((k, envfile.value(k)) for k in envfile.keys())) == credentials
    assert s.secret_values([(k, envfile.value(k)) for k in envfile.keys()]) == credentials
    assert _redact.env_file_secrets(path) == (credentials, 1)
    assert _incident.env_file_secrets(path) == (credentials, 1)
    # A key the operator adds is a secret unless it is declared public.
    with open(path, 'a') as handle:
        handle.write('CUSTOM_THING=also-secret-by-default\n')
    envfile = _envfile.EnvFile.from_bytes(open(path, 'rb').read())
    assert s.secret_values(envfile) == credentials + ['also-secret-by-default']


def test_secret_set_follows_a_rotation_into_the_backups(role_env):
    path, params = role_env
    old = s.secret_values(_envfile.EnvFile.from_bytes(open(path, 'rb').read()))
    operator_env.run(dict(params, rotate=['REDIS_PASSWORD']))
    new = s.secret_values(_envfile.EnvFile.from_bytes(open(path, 'rb').read()))
    values, files = _redact.env_file_secrets(path)
    assert files == 2 and sorted(values) == sorted(set(old + new)) and len(values) == 4


def test_the_redactor_and_the_checklist_apply_the_same_rule(role_env):
    path, dummy = role_env
    envfile = _envfile.EnvFile.from_bytes(open(path, 'rb').read())
    values = s.secret_values(envfile) + ['abc', 'abcd']     # 3 characters: too short to replace inside text
    text = 'login %s %s as registry (operator5, spiffe://example.com) abc abcd' % tuple(values[:2])
    redactor = _redact.Redactor(values)
    for out in (redactor.data(text), _checklist.scrub(text, values)):
        assert all(v not in out for v in values[:3]) and 'abcd' not in out
        assert 'abc ' in out and 'registry (operator5, spiffe://example.com)' in out
    assert _redact.MIN_SUBSTITUTION_LENGTH == _incident.MIN_SUBSTITUTION_LENGTH == s.MIN_SUBSTITUTION_LENGTH == 4


def test_substitutable():
    assert s.substitutable(['abc', 'abcd', 'abcdef', 'abcd', '', None, 12345]) == ['abcdef', 'abcd']
    assert s.substitutable([]) == []


def test_no_log_values():
    generated = s.generate_secret()
    assert s.no_log_values([generated, 'short7x', 'Postgres', 'changeme', None, '']) == set([generated])
    assert s.no_log_values(['12345678']) == set()   # a well-known default
