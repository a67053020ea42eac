# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_rotation: SCRAM verifiers against ones PostgreSQL 15 made, service planning on the real
compose configuration of a deployed lab stack, rollback planning, redis-cli replies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

import pytest

from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation

HERE = os.path.dirname(os.path.abspath(__file__))
# `docker compose config --no-interpolate --format json` of the stack deployed on lab-host3.
CONFIG = json.load(open(os.path.join(HERE, 'fixtures', 'rotation_compose_config.json'), encoding='utf-8'))

# Verifiers stored by PostgreSQL 15 (lab postgres image) for ALTER ROLE ... PASSWORD '<plaintext>'.
PG_VECTORS = [
    ('oldpassword123456', 'SCRAM-SHA-256$4096:Z/Npekus+Yg56exzkKxGRA==$usavAfhcyKwbeKCotFNwjl/EgwDqKVJ3hwXvqgSiu4U='
                          ':tKdvP5WVwuBgC+k5H6QTm0LW9FVtQ/PjzU0AtENyJJU='),
    ('pencil', 'SCRAM-SHA-256$4096:e0xcfvz+bdC/fazDBSEEpw==$SyIjHJBUv52hqr0SuWvRZadmb8PYZCkJ+2O+enfdRl0='
               ':sccueDyMy1sxZZltdkfukPUIcqSjnc+pHtFYF1V6F2s='),
    # U+2168 (roman numeral nine) and a no-break space: SASLprep maps them to "IX" and " ".
    ('\u2168\u00a0\u00fcn\u00ef', 'SCRAM-SHA-256$4096:UKM4t8F72tSIGDpwjSNdWw==$uFbcRFX9YrAuO2Ly5bLmdQqfkOUfwC0umhJVuu7ElK4='
                                  ':af/1DMhfxozn6y+AX2KCL9UfyIjZ4vh0iBBMP9TZJVw='),
]


@pytest.mark.parametrize('password,verifier', PG_VECTORS[:2])
def test_scram_verifier_equals_postgresql(password, verifier):
    salt = base64.b64decode(verifier.split('$')[1].split(':')[1])
    assert _rotation.scram_sha256_verifier(password, salt=salt) == verifier


@pytest.mark.parametrize('password,verifier', PG_VECTORS)
def test_scram_verifier_matches(password, verifier):
    assert _rotation.scram_verifier_matches(password, verifier)
    assert not _rotation.scram_verifier_matches(password + 'x', verifier)


def test_saslprep_maps_like_postgresql():
    assert _rotation.saslprep('\u2168\u00a0\u00fcn\u00ef') == 'IX \u00fcn\u00ef'.encode('utf-8')
    assert _rotation.saslprep('plain-ascii') == b'plain-ascii'
    # A control character: SASLprep would refuse, PostgreSQL uses the raw bytes.
    assert _rotation.saslprep('\u00e9\x07') == '\u00e9\x07'.encode('utf-8')


def test_rfc7677_exchange_with_our_keys():
    """RFC 7677 section 3: user "user", password "pencil"; our keys reproduce the proof and signature."""
    salt = base64.b64decode('W22ZaJ0SNY7soEsUEjb6gQ==')
    verifier = _rotation.scram_sha256_verifier('pencil', salt=salt)
    stored_key = base64.b64decode(verifier.split('$')[2].split(':')[0])
    server_key = base64.b64decode(verifier.split('$')[2].split(':')[1])
    auth = ('n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,'
            's=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0').encode()
    proof = base64.b64decode('dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=')
    client_key = bytes(a ^ b for a, b in zip(proof, hmac.new(stored_key, auth, hashlib.sha256).digest()))
    assert hashlib.sha256(client_key).digest() == stored_key
    assert base64.b64encode(hmac.new(server_key, auth, hashlib.sha256).digest()).decode() == \
        '6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='


def test_verifier_random_salt_and_garbage():
    one, two = _rotation.scram_sha256_verifier('x' * 20), _rotation.scram_sha256_verifier('x' * 20)
    assert one != two and _rotation.scram_verifier_matches('x' * 20, two)
    for bad in (None, '', 'md5abc', 'SCRAM-SHA-256$4096:!!$a:b'):
        assert not _rotation.scram_verifier_matches('x', bad)


def test_alter_role_sql_holds_only_the_verifier():
    verifier = _rotation.scram_sha256_verifier('s3cret-value-here')
    sql = _rotation.pg_alter_role_sql('reg"istry', verifier)
    assert sql == 'ALTER ROLE "reg""istry" PASSWORD \'%s\';\n' % verifier
    assert 's3cret-value-here' not in sql
    with pytest.raises(_rotation.RotationError):
        _rotation.pg_alter_role_sql('registry', "plaintext'; DROP TABLE events; --")


def test_redis_hash_and_commands():
    # The hash the lab redis entrypoint writes: printf '%s' "$pw" | sha256sum
    assert _rotation.redis_password_hash('oldredispass12345') == \
        'b0b352836b82aaaac93525e7ef33622eb6749357c81a00fccf9ed136cc269c97'
    new = _rotation.redis_password_hash('new')
    cmds = _rotation.redis_setuser_commands(add=[new], remove=['b0b352836b82aaaac93525e7ef33622eb6749357c81a00fccf9ed136cc269c97'])
    assert cmds == ('ACL SETUSER default #%s !b0b352836b82aaaac93525e7ef33622eb6749357c81a00fccf9ed136cc269c97\n'
                    'ACL SAVE\n' % new)
    with pytest.raises(_rotation.RotationError):
        _rotation.redis_setuser_commands(add=['>plaintext'])


def test_parse_redis_json_replies_real_output():
    # redis-cli 7.0 --json, as captured from the lab redis image (GETUSER, PING, a refused modifier).
    out = ('{"flags":["on"],"passwords":["b0b352836b82aaaac93525e7ef33622eb6749357c81a00fccf9ed136cc269c97"],'
           '"commands":"+@all","keys":"~*","channels":"&*","selectors":[]}\n"PONG"\n'
           'error:"ERR Error in ACL SETUSER modifier \'!abc\': The password hash must be exactly 64 characters"\n')
    replies = _rotation.parse_redis_json_replies(out)
    assert replies[0]['passwords'] == ['b0b352836b82aaaac93525e7ef33622eb6749357c81a00fccf9ed136cc269c97']
    assert replies[1] == 'PONG'
    assert 'error' in replies[2]
    refused = 'AUTH failed: WRONGPASS invalid username-password pair or user is disabled.\nerror:"NOAUTH Authentication required."\n'
    assert all('error' in r for r in _rotation.parse_redis_json_replies(refused))


def test_plan_services_on_the_deployed_stack():
    plan = _rotation.plan_services(CONFIG, list(_rotation.SUPPORTED_SECRETS))
    assert plan['recreate'] == ['registry']
    assert plan['live'] == {'db': ['POSTGRES_PASSWORD'], 'redis': ['REDIS_PASSWORD']}
    # Redis reads no password from the env (official image: redis/users.acl), but its credential is changed live.
    assert plan['consumers'] == {'POSTGRES_PASSWORD': ['db', 'registry'], 'REDIS_PASSWORD': ['registry'],
                                 'INTERNAL_API_KEY': ['registry']}
    # The internal key alone: only the registry.
    assert _rotation.plan_services(CONFIG, ['INTERNAL_API_KEY'])['recreate'] == ['registry']
    assert _rotation.plan_services(CONFIG, [])['recreate'] == []


def test_plan_services_sees_environment_references():
    config = json.loads(json.dumps(CONFIG))
    config['services']['cert-writer'].setdefault('environment', {})['REDIS_URL'] = 'redis://:${REDIS_PASSWORD}@redis'
    config['services']['nginx-federation'].setdefault('environment', {})['X'] = '$INTERNAL_API_KEY_OTHER'
    plan = _rotation.plan_services(config, ['REDIS_PASSWORD', 'INTERNAL_API_KEY'])
    assert plan['recreate'] == ['cert-writer', 'registry']


def test_validate_selection():
    assert _rotation.validate_selection([]) == list(_rotation.SUPPORTED_SECRETS)
    assert _rotation.validate_selection(['INTERNAL_API_KEY', 'POSTGRES_PASSWORD']) == \
        ['POSTGRES_PASSWORD', 'INTERNAL_API_KEY']
    with pytest.raises(_rotation.RotationError, match='FEDERATION_LICENSE_KEY'):
        _rotation.validate_selection(['FEDERATION_LICENSE_KEY'])


def test_plan_rollback():
    old = {'POSTGRES_PASSWORD': 'old-pg-password-1', 'REDIS_PASSWORD': 'old-redis-pass-1', 'INTERNAL_API_KEY': 'k1'}
    new = {'POSTGRES_PASSWORD': 'new-pg-password-2', 'REDIS_PASSWORD': 'new-redis-pass-2', 'INTERNAL_API_KEY': 'k2'}
    old_h, new_h = (_rotation.redis_password_hash(v['REDIS_PASSWORD']) for v in (old, new))
    # Mid-rotation: PostgreSQL already changed, Redis holds both passwords.
    plan = _rotation.plan_rollback(old, new, {
        'postgres_verifier': _rotation.scram_sha256_verifier(new['POSTGRES_PASSWORD']), 'redis_hashes': [old_h, new_h]})
    assert plan == {'env': list(_rotation.SUPPORTED_SECRETS), 'postgres': True, 'redis_add': [], 'redis_remove': [new_h]}
    # After the old Redis password was dropped: add it back, remove the new one.
    plan = _rotation.plan_rollback(old, old, {
        'postgres_verifier': _rotation.scram_sha256_verifier(old['POSTGRES_PASSWORD']), 'redis_hashes': [new_h]})
    assert plan == {'env': [], 'postgres': False, 'redis_add': [old_h], 'redis_remove': [new_h]}
    # Nothing readable: PostgreSQL is redone, Redis left alone.
    plan = _rotation.plan_rollback(old, old, {'postgres_verifier': None, 'redis_hashes': None})
    assert plan['postgres'] and not plan['redis_add'] and not plan['redis_remove']


def test_first_usable():
    assert _rotation.first_usable([None, '', 'a', 'b', 'a'], lambda v: v == 'b') == 'b'
    assert _rotation.first_usable(['a'], lambda v: False) is None
