#!/usr/bin/env bash
# The collection's docs site, offline, into .build/docsite/html: the plugin and role pages antsibull-docs makes
# from DOCUMENTATION and meta/argument_specs.yml, and the operator guides of docs/*.md as extra docs
# (docs/docsite/extra-docs.yml), from the tarball installed into a collections path of its own. The guides' pages
# are committed in docs/docsite/rst/ (made from the Markdown, the one source, by `make docs-rst`). Fails when those
# pages drift from docs/*.md, on a Markdown guide missing from extra-docs.yml (or the reverse), an antsibull-docs
# lint error on the installed collection, and any Sphinx warning.
# Needs .venv-release (requirements-release.txt) or RELEASE_VENV=<venv>, and pandoc (apt-get install pandoc).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${RELEASE_VENV:-$root/.venv-release}
out=$root/.build/docsite
collections=$out/collections
tree=$collections/ansible_collections/fleetpki/mtls

[[ -x $venv/bin/antsibull-docs && -x $venv/bin/sphinx-build ]] \
    || { echo "build_docsite.sh: no antsibull-docs and sphinx in $venv (see requirements-release.txt)" >&2; exit 2; }
command -v pandoc > /dev/null || { echo "build_docsite.sh: pandoc is needed (apt-get install pandoc)" >&2; exit 2; }

# The committed pages of the guides (docs/docsite/rst/) are what docs/*.md make.
"$root/tests/tools/docs_rst.sh" --check

rm -rf "$out" && mkdir -p "$out/tree" "$out/sphinx"
# Every docs/<name>.md is an entry of extra-docs.yml and the reverse: a new guide is not left off the site.
"$venv/bin/python" - "$root/docs" <<'PY'
import os, sys, yaml
docs = sys.argv[1]
with open(os.path.join(docs, 'docsite', 'extra-docs.yml')) as handle:
    index = yaml.safe_load(handle)
listed = [entry if isinstance(entry, str) else entry['ref'] for section in index['sections'] for entry in section['toctree']]
guides = sorted(name[:-3] for name in os.listdir(docs) if name.endswith('.md'))
missing, stray = sorted(set(guides) - set(listed)), sorted(set(listed) - set(guides))
if missing or stray:
    sys.exit('build_docsite.sh: docs/docsite/extra-docs.yml and docs/*.md differ: not listed %s, no Markdown file for %s'
             % (missing, stray))
PY

# The site is made from the collection as a user installs it: the tarball built from the tree (tracked and new
# files, not ignored ones, without collections/, the link back to the tree), installed into a collections path of
# its own. The lint then also proves the tarball ships every page extra-docs.yml names. The release venv's
# ansible-galaxy (with distlib, which reads galaxy.yml's manifest) and ansible-doc; none of the checkout's
# ansible.cfg (its collections_path is the checkout itself).
export PATH=$venv/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$collections
unset ANSIBLE_CONFIG PYTHONPATH
(cd "$root" && git ls-files -co --exclude-standard -z | grep -zv '^collections/' | tar --null -T - -cf -) | tar -xf - -C "$out/tree"
(cd "$out/tree" && ansible-galaxy collection build --output-path "$out" . > /dev/null)
(cd "$out" && ansible-galaxy collection install --force -p "$collections" "$out"/fleetpki-mtls-*.tar.gz > /dev/null)
[[ -f $tree/docs/docsite/extra-docs.yml ]] || { echo "build_docsite.sh: the installed tarball has no docs/docsite" >&2; exit 1; }
(cd "$tree" && antsibull-docs lint-collection-docs --plugin-docs .)
echo "build_docsite.sh: antsibull-docs lint-collection-docs --plugin-docs is clean on the installed tarball ($tree)"

chmod 0755 "$out/sphinx"  # sphinx-init wants a directory only its owner can write
antsibull-docs sphinx-init --use-current --fail-on-error --dest-dir "$out/sphinx" \
    --project fleetpki.mtls --title "fleetpki.mtls" --copyright "fleetpki contributors" fleetpki.mtls > /dev/null
# Offline: no inventories of other docs sites to fetch (each fetch would be a warning, and warnings fail the build).
# The labels of docs.ansible.com that antsibull-docs' generated pages link to (return values, configuration, callback
# plugins) are then unknown: only they are let through, so a broken reference of ours still fails the build.
cat >> "$out/sphinx/conf.py" <<'PY'
intersphinx_mapping = {}
nitpick_ignore = [('std:ref', label) for label in ('common_return_values', 'ansible_configuration_settings', 'callback_plugins')]
PY
(cd "$out/sphinx" && ./build.sh)
rm -rf "$out/html" && mv "$out/sphinx/build/html" "$out/html"
echo "build_docsite.sh: docs site in $out/html/index.html"
