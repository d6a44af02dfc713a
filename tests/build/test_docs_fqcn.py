"""The operator guides give commands as an operator runs them: from the project, the playbook by its FQCN.

An operator has the installed collection, not this repository's checkout: `ansible-playbook playbooks/rotate.yml`
or `ansible-playbook site.yml` finds nothing in their project. The contributor pages (development.md, lab.md,
benchmarks.md) run the checkout's playbooks and are left out.
"""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONTRIBUTOR_PAGES = {'development.md', 'lab.md', 'benchmarks.md'}
# ansible-playbook, any options, then a playbook given as a path (site.yml, playbooks/x.yml) rather than an FQCN.
CHECKOUT_FORM = re.compile(r'ansible-playbook(?:\s+-{1,2}[\w-]+(?:[ =](?!-)[^\s`]+)?)*\s+(?:\S*/)?[\w-]+\.ya?ml\b')
# A sentence that explains the checkout form to a contributor, not a command.
CHECKOUT_EXPLAINED = re.compile(r'checkout', re.IGNORECASE)


def operator_pages():
    return sorted(path for path in (ROOT / 'docs').glob('*.md') if path.name not in CONTRIBUTOR_PAGES)


@pytest.mark.parametrize('page', operator_pages(), ids=lambda path: path.name)
def test_operator_commands_use_fqcn(page):
    bad = ['%s:%d: %s' % (page.name, number, line.strip())
           for number, line in enumerate(page.read_text(encoding='utf-8').splitlines(), 1)
           if CHECKOUT_FORM.search(line) and not CHECKOUT_EXPLAINED.search(line)]
    assert not bad, 'commands in checkout form (use ansible-playbook fleetpki.mtls.<name> -i inventories/<fleet>): %s' % bad


def test_the_check_sees_the_checkout_form():
    for line in ('ansible-playbook -i inventories/<fleet> playbooks/rotate.yml -e force=true',
                 'ansible-playbook site.yml -i inventories/<fleet> --ask-vault-pass',
                 '30 2 * * *  cd /srv/fleet && ansible-playbook -i inventories/prod playbooks/pki_backup.yml \\'):
        assert CHECKOUT_FORM.search(line), line
    assert not CHECKOUT_FORM.search('ansible-playbook fleetpki.mtls.rotate -i inventories/<fleet> -e force=true')
