"""Say which of the given vault password files to keep for an existing vault, as one JSON line; never run any.

    python vault_password_file_that_opens.py VAULT PASSWORD_FILE...

fleetpki.mtls.init runs it before it writes anything, so ansible.cfg keeps naming a password file that opens the
project's existing vault (a moved project, an older init's <name>.vault-pass). The files are tried in the order
given; the first that is either a plain file whose content opens the vault, or an executable one, is kept:
    exit 0, {"password_file": <file>, "script": false}    a plain file that opens the vault
    exit 0, {"password_file": <file>, "script": true}     an executable file: kept, NOT run, the vault not checked
    exit 1                                               none of them
    exit 3                                               the vault is not vault-encrypted
An executable password file is a script Ansible would run for the password. init is pointed at projects received
from others (-e dest=<a project>, whose ansible.cfg may name a script relative to it), so it never executes one, in
check mode or not: it reads only regular files, without following them into anything that could block (a FIFO) or
run. Only paths are on the command line; neither the passwords nor the vault's content reach the output.
"""
import json
import os
import stat
import sys

from ansible.parsing.vault import VaultLib, VaultSecret, is_encrypted

# A password file is a line; a larger file is not one (and is not read whole).
MAX_PASSWORD_FILE = 64 * 1024
NOT_ENCRYPTED = 3


def is_script(path):
    """An executable regular file (any x bit, as ansible's loader decides to run it)."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and bool(info.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))


def password_in(path):
    """The password a plain (regular, not executable) file holds, or None; nothing is executed, nothing blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, 'rb') as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
            return None
        password = handle.read(MAX_PASSWORD_FILE + 1).strip()
    return password if password and len(password) <= MAX_PASSWORD_FILE else None


def opens(vault_text, password):
    try:
        VaultLib([('default', VaultSecret(password))]).decrypt(vault_text)
    except Exception:  # pylint: disable=broad-except  # any failure to decrypt: this password does not open it
        return False
    return True


def main(argv):
    vault, candidates = argv[0], argv[1:]
    with open(vault, 'rb') as handle:
        vault_text = handle.read()
    if not is_encrypted(vault_text):
        return NOT_ENCRYPTED
    for password_file in candidates:
        if is_script(password_file):
            print(json.dumps({'password_file': password_file, 'script': True}))
            return 0
        password = password_in(password_file)
        if password is not None and opens(vault_text, password):
            print(json.dumps({'password_file': password_file, 'script': False}))
            return 0
    return 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
