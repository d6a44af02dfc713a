"""Print the first of the given vault password files that opens the vault; exit 1 when none does.

    python vault_password_file_that_opens.py VAULT PASSWORD_FILE...

fleetpki.mtls.init runs it before it writes anything, so ansible.cfg keeps naming a password file that opens the
project's existing vault (a moved project, an older init's <name>.vault-pass). The password files are read (an
executable one run) by ansible-core's own code, as ansible-playbook reads vault_password_file: only paths are on
the command line, and neither the passwords nor the vault's content reach the output.
"""
import sys

from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, get_file_vault_secret


def opens(vault_text, password_file, loader):
    try:
        secret = get_file_vault_secret(filename=password_file, loader=loader)
        secret.load()
        VaultLib([('default', secret)]).decrypt(vault_text)
    except Exception:  # pylint: disable=broad-except  # any failure to read or decrypt: this file does not open it
        return False
    return True


def main(argv):
    vault, candidates = argv[0], argv[1:]
    with open(vault, 'rb') as handle:
        vault_text = handle.read()
    loader = DataLoader()
    for password_file in candidates:
        if opens(vault_text, password_file, loader):
            print(password_file)
            return 0
    return 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
