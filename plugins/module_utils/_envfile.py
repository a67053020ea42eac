# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Read, change and write the stack's ``.env.operator`` (private to this collection).

The file is a dotenv file as docker compose (compose-go) reads it: ``KEY=value``
lines, optionally ``export KEY=value`` or ``KEY: value``; comments and blank lines;
values unquoted (cut at `` #``, trimmed, ``$`` interpolated), in single quotes
(literal, ``\\'`` for a quote) or in double quotes (escapes such as ``\\n``,
``$`` interpolated), quoted values possibly spanning lines. Parsing keeps every line
as written, so rewriting changes only the lines of the keys that change.

Values are written so that compose reads them back verbatim. Every error is an
:class:`EnvFileError` whose message names lines and keys but never a value.
"""

from __future__ import annotations

import datetime
import errno
import os
import re
import stat
import tempfile

from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets

KEY_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*\Z')
# compose accepts letters, digits, "_" and "." in names it reads.
_FILE_KEY_RE = re.compile(r'^[A-Za-z0-9_.]+\Z')
_UNQUOTED_SAFE_RE = re.compile(r'^[A-Za-z0-9_./:@%+,=^~\\-]+\Z')
_COMMENTED_ASSIGNMENT_RE = re.compile(r'^([ \t]*#[ \t]*(?:export[ \t]+)?[A-Za-z0-9_.]+[ \t]*=)')
_EXPORT_RE = re.compile(r'export[ \t]+')
_SPACE = ' \t\v\f\r\x85\xa0'
_DOUBLE_QUOTE_ESCAPES = {'n': '\n', 'r': '\r', 't': '\t', 'a': '\a', 'b': '\b', 'f': '\f', 'v': '\v',
                         '\\': '\\', '"': '"', '$': '$'}

REDACTED = '<redacted>'
DEFAULT_MODE = 0o600
BACKUP_SUFFIX = '.bak'
BACKUP_TIME_FORMAT = '%Y%m%dT%H%M%SZ'
MANAGED_HEADER = ('# Managed by Ansible (theprotocol.operator.operator_env). Keys and comments you add are kept;\n'
                  '# managed keys are set by the playbook. Keep this file mode 0600: it holds the stack secrets.\n')


class EnvFileError(Exception):
    """The one error type of this module; its message never holds a value from the file."""


# --------------------------------------------------------------------------- values

def setting_value_to_str(value):
    """The string a non-secret setting is written as: booleans as ``true``/``false``, numbers as text."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    raise TypeError(type(value).__name__)


def key_problem(key):
    """Why ``key`` cannot be a managed key name, or None."""
    if not isinstance(key, str) or not KEY_RE.match(key):
        return ('%r is not a valid variable name: use letters, digits and "_", not starting with a digit '
                '(for example POSTGRES_PASSWORD).' % (key,))
    return None


def settings_problems(settings):
    """Return ``(normalized, problems)`` for a dict of non-secret settings.

    ``normalized`` maps each valid key to its string value; ``problems`` lists what is
    wrong with the others, each message naming the key and saying what to do.
    """
    normalized = {}
    problems = []
    if settings is None:
        return normalized, problems
    if not isinstance(settings, dict):
        return normalized, ['settings must be a dictionary of KEY: value.']
    for key, value in settings.items():
        problem = key_problem(key)
        if problem:
            problems.append('Setting %s' % problem)
            continue
        if value is None:
            problems.append('Setting %s has no value (null). Give it a value; use "" for an empty one.' % key)
            continue
        try:
            text = setting_value_to_str(value)
        except TypeError as exc:
            problems.append('Setting %s must be a string, number or boolean, not a %s.' % (key, exc))
            continue
        if '\n' in text or '\r' in text or '\x00' in text:
            problems.append('Setting %s contains a line break or NUL character, which a dotenv line cannot hold. '
                            'Remove it from the value.' % key)
            continue
        normalized[key] = text
    return normalized, problems


def format_value(key, value):
    """The dotenv text for ``value`` that compose reads back verbatim (no interpolation)."""
    if value == '':
        return ''
    if '\n' in value or '\r' in value or '\x00' in value:
        raise EnvFileError('The value for %s contains a line break or NUL character and cannot be written to the '
                           'env file. Remove it from the value.' % key)
    if _UNQUOTED_SAFE_RE.match(value):
        return value
    if "'" not in value and not value.endswith('\\'):
        return "'%s'" % value
    if '\\' not in value:
        return "'%s'" % value.replace("'", "\\'")
    raise EnvFileError('The value for %s holds a backslash together with a single quote or with characters that '
                       'need quoting (such as spaces, "$" or "#"); docker compose cannot read such a value back '
                       'unchanged from an env file. Use a value without backslashes.' % key)


# --------------------------------------------------------------------------- parsing

class Entry:
    """One statement of the file with its source text (one or more lines, with line endings)."""

    __slots__ = ('kind', 'text', 'line', 'key', 'value', 'interpolated', 'prefix', 'comment', 'eol')

    def __init__(self, kind, text, line, key=None, value=None, interpolated=False, prefix='', comment='', eol='\n'):
        self.kind = kind              # 'blank', 'comment', 'assignment' or 'inherit' (KEY alone)
        self.text = text
        self.line = line              # first line number, 1-based
        self.key = key
        self.value = value            # decoded value; None for 'inherit'
        self.interpolated = interpolated  # compose would expand "$" in the value as written
        self.prefix = prefix          # indentation and "export " as written
        self.comment = comment        # trailing " # comment" as written (may be '')
        self.eol = eol

    def set_value(self, value, key_for_errors=None):
        self.kind = 'assignment'
        self.value = value
        self.interpolated = False
        text = format_value(key_for_errors or self.key, value)
        comment = self.comment
        if comment:
            # An empty unquoted value would swallow the comment, and an unquoted value
            # only ends at " #": quote the empty value, keep a blank before "#".
            text = text or "''"
            if not comment[:1].isspace():
                comment = ' ' + comment
        self.text = '%s%s=%s%s%s' % (self.prefix, self.key, text, comment, self.eol)


def _decode_quoted(body, quote):
    """compose-go's reading of a quoted value (``body`` without the quotes)."""
    out = []
    interpolated = False
    i = 0
    while i < len(body):
        char = body[i]
        if char == '\\' and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == quote:
                out.append(quote)
            elif quote == '"' and nxt in _DOUBLE_QUOTE_ESCAPES:
                out.append(_DOUBLE_QUOTE_ESCAPES[nxt])
            else:
                out.append(char + nxt)
            i += 2
            continue
        if char == '$' and quote == '"':
            interpolated = True
        out.append(char)
        i += 1
    return ''.join(out), interpolated


def _find_closing_quote(text, start, quote):
    """Index of the quote closing a value whose first character is at ``start``; -1 if none."""
    i = start
    while i < len(text):
        char = text[i]
        if char == '\\':
            i += 2
            continue
        if char == quote:
            return i
        i += 1
    return -1


def _line_end(text, pos):
    eol = text.find('\n', pos)
    return len(text) if eol < 0 else eol + 1


def _split_eol(line):
    if line.endswith('\r\n'):
        return line[:-2], '\r\n'
    if line.endswith('\n'):
        return line[:-1], '\n'
    return line, ''


class EnvFile:
    """A parsed dotenv file that renders back to the same text until changed."""

    def __init__(self, entries=None, newline='\n'):
        self.entries = list(entries or [])
        self.newline = newline

    # ----------------------------------------------------------------- reading

    @classmethod
    def from_bytes(cls, data, what='env file'):
        if data.startswith(b'\xef\xbb\xbf'):
            raise EnvFileError('The %s starts with a UTF-8 byte order mark, which docker compose does not accept '
                               'in a variable name. Save the file without BOM.' % what)
        try:
            text = data.decode('utf-8')
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b'\n') + 1
            raise EnvFileError('Line %d of the %s is not valid UTF-8 text. Fix the encoding of that line.'
                               % (line, what)) from None
        return cls.parse(text, what)

    @classmethod
    def parse(cls, text, what='env file'):
        entries = []
        pos = 0
        line = 1
        newline = '\r\n' if text.split('\n', 1)[0].endswith('\r') else '\n'
        while pos < len(text):
            end = _line_end(text, pos)
            body, eol = _split_eol(text[pos:end])
            stripped = body.strip()
            if not stripped:
                entries.append(Entry('blank', text[pos:end], line, eol=eol))
            elif stripped.startswith('#'):
                entries.append(Entry('comment', text[pos:end], line, eol=eol))
            else:
                entry, end = cls._parse_statement(text, pos, end, line, what)
                entries.append(entry)
            line += text.count('\n', pos, end)
            pos = end
        return cls(entries, newline)

    @staticmethod
    def _parse_statement(text, pos, end, line, what):
        body, eol = _split_eol(text[pos:end])
        indent_len = len(body) - len(body.lstrip(_SPACE))
        rest = body[indent_len:]
        export = _EXPORT_RE.match(rest)
        if export:
            rest = rest[export.end():]
        prefix = body[:indent_len] + (export.group(0) if export else '')
        sep_at = min((i for i in (rest.find('='), rest.find(':')) if i >= 0), default=-1)
        key = (rest if sep_at < 0 else rest[:sep_at]).rstrip(_SPACE)
        if not key or not _FILE_KEY_RE.match(key):
            raise EnvFileError(
                'Line %d of the %s is not KEY=value, a comment or a blank line (the part before "=" is not a valid '
                'variable name). Fix or remove that line; nothing was changed.' % (line, what))
        if sep_at < 0:
            return Entry('inherit', text[pos:end], line, key=key, prefix=prefix, eol=eol), end
        value_part = rest[sep_at + 1:].lstrip(_SPACE)
        if value_part[:1] in ('"', "'"):
            quote = value_part[0]
            start = pos + len(body) - len(value_part) + 1
            close = _find_closing_quote(text, start, quote)
            if close < 0:
                raise EnvFileError('Line %d of the %s opens a quoted value that is never closed. Add the closing %s '
                                   'quote; nothing was changed.' % (line, what, quote))
            value, interpolated = _decode_quoted(text[start:close], quote)
            end = _line_end(text, close)
            trailing, eol = _split_eol(text[close + 1:end])
            if trailing.strip() and not trailing.lstrip(_SPACE).startswith('#'):
                raise EnvFileError('Line %d of the %s has text after the closing quote of its value. Move it into '
                                   'the quotes or behind " #"; nothing was changed.'
                                   % (line + text.count('\n', pos, close), what))
            return Entry('assignment', text[pos:end], line, key=key, value=value, interpolated=interpolated,
                         prefix=prefix, comment=trailing if '#' in trailing else '', eol=eol), end
        value, hash_sep, dummy = value_part.partition(' #')
        value = value.rstrip()
        # Keep the comment with the blanks that stood between value and comment.
        comment = value_part[len(value):] if hash_sep else ''
        return Entry('assignment', text[pos:end], line, key=key, value=value, interpolated='$' in value,
                     prefix=prefix, comment=comment, eol=eol), end

    # ----------------------------------------------------------------- queries

    def render(self):
        return ''.join(entry.text for entry in self.entries)

    def _entries_for(self, key):
        return [e for e in self.entries if e.kind in ('assignment', 'inherit') and e.key == key]

    def lookup(self, key):
        """The entry compose uses for ``key`` (the last one), or None."""
        found = self._entries_for(key)
        return found[-1] if found else None

    def value(self, key):
        """The value of ``key`` as compose reads it without interpolation; None when absent or inherited."""
        entry = self.lookup(key)
        return entry.value if entry is not None else None

    def keys(self):
        seen = []
        for entry in self.entries:
            if entry.kind in ('assignment', 'inherit') and entry.key not in seen:
                seen.append(entry.key)
        return seen

    def duplicates(self):
        keys = [e.key for e in self.entries if e.kind in ('assignment', 'inherit')]
        return sorted(set(k for k in keys if keys.count(k) > 1))

    # ----------------------------------------------------------------- changes

    def set(self, key, value, all_occurrences=False):
        """Make ``key`` hold ``value`` verbatim; returns 'added', 'updated' or None (already so)."""
        found = self._entries_for(key)
        if not found:
            if self.entries and not self.entries[-1].text.endswith('\n'):
                self.entries[-1].text += self.newline
                self.entries[-1].eol = self.newline
            entry = Entry('assignment', '', 0, key=key, eol=self.newline)
            entry.set_value(value)
            self.entries.append(entry)
            return 'added'
        targets = found if all_occurrences else found[-1:]
        changed = None
        for entry in targets:
            if entry.kind != 'assignment' or entry.value != value or entry.interpolated:
                entry.set_value(value)
                changed = 'updated'
        return changed

    def render_redacted(self, show_keys=(), notes=None):
        """The file with every value replaced by ``<redacted>`` except those of ``show_keys``.

        Commented-out assignments (``# KEY=value``) and lines without "=" are redacted
        too. ``notes`` maps a key to a word appended to its redacted value, e.g. to
        show that a secret was generated.
        """
        notes = notes or {}
        out = []
        for entry in self.entries:
            if entry.kind == 'comment':
                match = _COMMENTED_ASSIGNMENT_RE.match(_split_eol(entry.text)[0])
                if match:
                    out.append('%s%s%s' % (match.group(1), REDACTED, entry.eol))
                    continue
                out.append(entry.text)
            elif entry.kind in ('assignment', 'inherit') and entry.key in show_keys:
                out.append(entry.text)
            elif entry.kind == 'inherit':
                out.append('%s%s%s' % (entry.prefix, REDACTED, entry.eol))
            elif entry.kind == 'assignment':
                note = notes.get(entry.key)
                out.append('%s%s=%s%s%s' % (entry.prefix, entry.key, REDACTED, ' (%s)' % note if note else '',
                                            entry.eol or ''))
            else:
                out.append(entry.text)
        return ''.join(out)


# --------------------------------------------------------------------------- the request

def validate_request(settings, secrets, rotate):
    """Check the keys and values a caller asks for; returns ``(settings, secret_keys, rotate_keys)``.

    Raises one EnvFileError that lists every problem. ``rotate`` keys count as secret keys.
    """
    normalized, problems = settings_problems(settings)
    secret_keys = []
    for what, keys in (('secrets', secrets), ('rotate', rotate)):
        for key in keys or []:
            problem = key_problem(key)
            if problem:
                problems.append('%s entry %s' % (what, problem))
            elif key not in secret_keys:
                secret_keys.append(key)
    for key in secret_keys:
        if key in normalized or (isinstance(settings, dict) and key in settings):
            problems.append('%s is both a setting and a secret. A key holds either a fixed setting or a generated '
                            'secret: remove it from one of the two lists.' % key)
    if problems:
        raise EnvFileError('Invalid request for the env file: %s' % ' '.join(problems))
    rotate_keys = []
    for key in rotate or []:
        if key not in rotate_keys:
            rotate_keys.append(key)
    return normalized, secret_keys, rotate_keys


def plan(envfile, settings, secret_keys, rotate_keys=(), secret_bytes=_secrets.DEFAULT_SECRET_BYTES,
         generate=_secrets.generate_secret):
    """Change ``envfile`` in place to the requested state and describe what changed.

    Settings are set on every line of their key; a secret is generated only where it is
    missing or empty (never overwritten) and regenerated for ``rotate_keys``. The
    returned dict holds key names only; values stay in ``envfile``.
    """
    result = dict(added_keys=[], updated_keys=[], generated_keys=[], rotated_keys=[], weak_keys=[],
                  weak_reasons={}, duplicate_keys=[])
    managed = list(settings) + list(secret_keys)
    result['duplicate_keys'] = [k for k in envfile.duplicates() if k in managed]
    for key, value in settings.items():
        outcome = envfile.set(key, value, all_occurrences=True)
        if outcome == 'added':
            result['added_keys'].append(key)
        elif outcome == 'updated':
            result['updated_keys'].append(key)
    for key in secret_keys:
        current = envfile.value(key)
        if key in rotate_keys and current:
            envfile.set(key, generate(secret_bytes))
            result['rotated_keys'].append(key)
        elif not current:
            if envfile.set(key, generate(secret_bytes)) == 'added':
                result['added_keys'].append(key)
            result['generated_keys'].append(key)
        else:
            reason = _secrets.weakness(current, key)
            if reason:
                result['weak_keys'].append(key)
                result['weak_reasons'][key] = reason
    return result


def fingerprints(envfile, secret_keys, unknown=()):
    """``{key: first 12 hex of sha256}`` for the secret keys; None for keys in ``unknown`` or without value."""
    return dict((key, None if key in unknown else _secrets.fingerprint(envfile.value(key) or None))
                for key in secret_keys)


# --------------------------------------------------------------------------- files

def parse_mode(mode):
    """An octal mode from ``'0600'``, ``'600'`` or an int; raises EnvFileError if it lets others in."""
    if mode is None:
        return DEFAULT_MODE
    if isinstance(mode, bool):
        raise EnvFileError('mode must be an octal number such as "0600".')
    if isinstance(mode, int):
        value = mode
    else:
        text = str(mode).strip()
        if text.startswith('0o'):
            text = text[2:]
        if not re.match(r'^[0-7]{1,4}\Z', text):
            raise EnvFileError('mode %r is not an octal mode such as "0600" (symbolic modes are not supported).'
                               % (mode,))
        value = int(text, 8)
    if value < 0 or value > 0o7777:
        raise EnvFileError('mode %r is out of range; use an octal mode such as "0600".' % (mode,))
    if value & 0o007:
        raise EnvFileError('mode %s would give other users access to the stack secrets. Use "0600" (or "0640" '
                           'for a group that must read it).' % format(value, '04o'))
    if value & 0o7000 or value & 0o111:
        raise EnvFileError('mode %s has execute or special bits; the env file is data: use "0600".'
                           % format(value, '04o'))
    if not value & stat.S_IRUSR:
        raise EnvFileError('mode %s does not let the owner read the file; use "0600".' % format(value, '04o'))
    return value


def read(path):
    """``(bytes, stat_result)`` of ``path``, or ``(None, None)`` when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        raise EnvFileError('Cannot read %s: %s. Run the task with enough privileges (become).'
                           % (path, exc.strerror or exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise EnvFileError('%s is not a regular file. Point path at the env file.' % path)
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b''.join(chunks), info
    except OSError as exc:
        raise EnvFileError('Cannot read %s: %s.' % (path, exc.strerror or exc)) from None
    finally:
        os.close(fd)


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, data, mode=DEFAULT_MODE, uid=None, gid=None):
    """Replace ``path`` with ``data``: temp file in the same directory, created 0600, fsync, rename.

    The temp file is created with mode 0600 whatever the umask, given ``mode``, owner
    and group before it gets its name, so the file is never readable by others.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path), suffix='.tmp')
    except OSError as exc:
        raise EnvFileError('Cannot create a temporary file in %s: %s. Check that the directory exists and is '
                           'writable (become).' % (directory, exc.strerror or exc)) from None
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            info = os.fstat(fd)
            if (uid is not None and uid != info.st_uid) or (gid is not None and gid != info.st_gid):
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if exc.errno in (errno.EPERM, errno.EACCES) and (uid is not None or gid is not None):
            raise EnvFileError('Cannot give %s the requested owner/group: %s. Run the task with become.'
                               % (path, exc.strerror or exc)) from None
        raise EnvFileError('Cannot write %s: %s.' % (path, exc.strerror or exc)) from None
    _fsync_dir(directory)


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def _backup_re(path):
    return re.compile(r'^%s\.(\d{8}T\d{6}Z)(?:\.(\d+))?%s\Z'
                      % (re.escape(os.path.basename(path)), re.escape(BACKUP_SUFFIX)))


def _list_dir_backups(path):
    directory = os.path.dirname(os.path.abspath(path))
    pattern = _backup_re(path)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [os.path.join(directory, name) for name in names if pattern.match(name)]


def list_backups(path):
    """Backups of ``path`` made by :func:`backup`, newest first."""
    pattern = _backup_re(path)
    found = []
    for name in _list_dir_backups(path):
        match = pattern.match(os.path.basename(name))
        found.append(((match.group(1), int(match.group(2) or 0)), name))
    return [name for dummy, name in sorted(found, reverse=True)]


def backup(path, data, now=None):
    """Write ``data`` (the current content) to ``<path>.<YYYYmmddTHHMMSSZ>.bak``, mode 0600; returns its name."""
    stamp = (now or _utcnow()).astimezone(datetime.timezone.utc).strftime(BACKUP_TIME_FORMAT)
    # Within one second, number the backups after the newest one of that second (even if
    # older ones were pruned), so that names sort in the order the backups were made.
    pattern = _backup_re(path)
    taken = [int(m.group(2) or 0) for m in (pattern.match(os.path.basename(n)) for n in _list_dir_backups(path))
             if m and m.group(1) == stamp]
    first = max(taken) + 1 if taken else 0
    for attempt in range(first, first + 1000):
        name = '%s.%s%s%s' % (path, stamp, '.%d' % attempt if attempt else '', BACKUP_SUFFIX)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)
        except FileExistsError:
            continue
        except OSError as exc:
            raise EnvFileError('Cannot create the backup %s: %s. Nothing was changed.'
                               % (name, exc.strerror or exc)) from None
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise EnvFileError('Cannot write the backup %s: %s. Nothing was changed.'
                               % (name, exc.strerror or exc)) from None
        os.close(fd)
        _fsync_dir(os.path.dirname(os.path.abspath(name)))
        return name
    raise EnvFileError('Too many backups of %s within one second.' % path)


def prune_backups(path, keep):
    """Remove all but the ``keep`` newest backups of ``path`` (``keep`` 0: keep all); returns removed names."""
    if not keep:
        return []
    removed = []
    for name in list_backups(path)[keep:]:
        try:
            os.unlink(name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise EnvFileError('Cannot remove the old backup %s: %s.' % (name, exc.strerror or exc)) from None
        removed.append(name)
    return removed
