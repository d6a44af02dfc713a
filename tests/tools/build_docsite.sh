#!/usr/bin/env bash
# The collection's docs site, offline, into .build/docsite/html: the plugin and role pages antsibull-docs makes
# from DOCUMENTATION and meta/argument_specs.yml, and the operator guides of docs/*.md as extra docs
# (docs/docsite/extra-docs.yml). The guides are converted to reStructuredText here, at build time, from the
# Markdown (the one source; nothing converted is committed). Fails on an antsibull-docs lint error, a Markdown
# guide missing from extra-docs.yml (or the reverse), and any Sphinx warning.
# Needs .venv-release (requirements-release.txt) or RELEASE_VENV=<venv>, and pandoc (apt-get install pandoc).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${RELEASE_VENV:-$root/.venv-release}
out=$root/.build/docsite
collections=$out/collections
tree=$collections/ansible_collections/fleetpki/mtls
label_prefix=ansible_collections.fleetpki.mtls.docsite.

[[ -x $venv/bin/antsibull-docs && -x $venv/bin/sphinx-build ]] \
    || { echo "build_docsite.sh: no antsibull-docs and sphinx in $venv (see requirements-release.txt)" >&2; exit 2; }
command -v pandoc > /dev/null || { echo "build_docsite.sh: pandoc is needed (apt-get install pandoc)" >&2; exit 2; }

rm -rf "$out" && mkdir -p "$tree" "$out/sphinx"
# The collection as a checkout holds it (tracked and new files, not ignored ones), without collections/, the
# link back to the tree.
(cd "$root" && git ls-files -co --exclude-standard -z | grep -zv '^collections/' | tar --null -T - -cf -) | tar -xf - -C "$tree"

# Every docs/<name>.md is an entry of extra-docs.yml and the reverse: a new guide is not left off the site.
"$venv/bin/python" - "$tree/docs" <<'PY'
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

# docs/<name>.md -> docs/docsite/rst/<name>.rst with the label antsibull-docs requires. Fixed up after pandoc:
# links between guides (<name>.md, <name>.md#anchor) point at their pages of the site; a code block right under a
# list item's text gets the blank line RST needs; pandoc's own section labels (.. _1-cron:) go, since antsibull-docs
# refuses labels without the collection's prefix (docutils gives every section an id of its own anyway).
mkdir -p "$tree/docs/docsite/rst"
for md in "$tree"/docs/*.md; do
    name=$(basename "$md" .md)
    {
        printf '.. _%s%s:\n\n' "$label_prefix" "$name"
        pandoc --from gfm --to rst --wrap=none "$md" \
            | awk 'prev !~ /^[ \t]*$/ && /^[ \t]*\.\. code::/ { print "" } { print; prev = $0 }' \
            | sed -E -e '/^\.\. _[^:`]+:$/d' -e 's/<([A-Za-z0-9_-]+)\.md(#[^>]*)?>`/<\1.html\2>`/g'
    } > "$tree/docs/docsite/rst/$name.rst"
done

# The release venv's ansible-doc, none of the checkout's ansible.cfg (its collections_path is the checkout itself).
export PATH=$venv/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$collections
unset ANSIBLE_CONFIG PYTHONPATH
(cd "$tree" && antsibull-docs lint-collection-docs --plugin-docs .)

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
