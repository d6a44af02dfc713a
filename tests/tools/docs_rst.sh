#!/usr/bin/env bash
# The operator guides as the docs site takes them: docs/<name>.md -> docs/docsite/rst/<name>.rst, committed, so the
# tarball (and an installed collection, docs.ansible.com, antsibull-docs on it) holds the pages extra-docs.yml names.
# The Markdown stays the one source: `make docs-rst` runs this to write them; `docs_rst.sh --check` (run by
# tests/tools/build_docsite.sh in CI) fails when a committed page differs from what its Markdown makes, or has
# no Markdown left. Needs pandoc (apt-get install pandoc; the pages are made by Debian 12's 2.17).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
rst=$root/docs/docsite/rst
label_prefix=ansible_collections.fleetpki.mtls.docsite.
mode='write'
case ${1:-} in
    --check) mode=check ;;
    '') ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
command -v pandoc > /dev/null || { echo "docs_rst.sh: pandoc is needed (apt-get install pandoc)" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Each page starts with the label antsibull-docs requires. Fixed up after pandoc: links between guides (<name>.md,
# <name>.md#anchor) point at their pages of the site; a code block right under a list item's text gets the blank
# line RST needs; pandoc's own section labels (.. _1-cron:) go, since antsibull-docs refuses labels without the
# collection's prefix (docutils gives every section an id of its own anyway).
# shellcheck disable=SC2016  # the $ in the awk and sed programs are theirs, not the shell's
for md in "$root"/docs/*.md; do
    name=$(basename "$md" .md)
    {
        printf '.. _%s%s:\n\n' "$label_prefix" "$name"
        pandoc --from gfm --to rst --wrap=none "$md" \
            | awk 'prev !~ /^[ \t]*$/ && /^[ \t]*\.\. code::/ { print "" } { print; prev = $0 }' \
            | sed -E -e '/^\.\. _[^:`]+:$/d' -e 's/<([A-Za-z0-9_-]+)\.md(#[^>]*)?>`/<\1.html\2>`/g'
    } > "$tmp/$name.rst"
done

if [[ $mode == write ]]; then
    mkdir -p "$rst"
    rm -f "$rst"/*.rst
    cp "$tmp"/*.rst "$rst"/
    echo "docs_rst.sh: docs/docsite/rst/ written from docs/*.md ($(find "$tmp" -name '*.rst' | wc -l) pages)"
    exit 0
fi
if ! diff -ru "$tmp" "$rst" >&2; then
    echo "docs_rst.sh: docs/docsite/rst/ differs from what docs/*.md make (above); run: make docs-rst, and commit" >&2
    exit 1
fi
echo "docs_rst.sh: docs/docsite/rst/ matches docs/*.md"
