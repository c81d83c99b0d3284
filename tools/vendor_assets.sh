#!/usr/bin/env bash
# Fetch MathJax 3 and the Jupyter widget scripts from the npm registry into a folder the book
# ships with its HTML (html_extra_path), so the built book shows maths and widgets offline.
# Usage: bash tools/vendor_assets.sh _vendor
set -euo pipefail
dest=${1:-_vendor}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! command -v npm >/dev/null 2>&1; then
  echo "vendor_assets: npm is needed to fetch MathJax and the widget scripts (install Node.js)." >&2
  exit 1
fi
(cd "$tmp" && npm pack --silent mathjax@3.2.2 @jupyter-widgets/html-manager@1.0.6 requirejs@2.3.4 >/dev/null 2>&1)
rm -rf "$dest"
mkdir -p "$dest/mathjax" "$dest/widgets" "$tmp/mj" "$tmp/hm" "$tmp/rq"
tar -xzf "$tmp"/mathjax-3.2.2.tgz -C "$tmp/mj"
tar -xzf "$tmp"/jupyter-widgets-html-manager-1.0.6.tgz -C "$tmp/hm"
tar -xzf "$tmp"/requirejs-2.3.4.tgz -C "$tmp/rq"
# MathJax: the combined TeX/MathML -> CommonHTML component, its fonts, and the lazily loaded
# extensions and menu; the speech-rule engine (sre) is left out to keep the copy small.
es5="$tmp/mj/package/es5"
cp "$es5/tex-mml-chtml.js" "$dest/mathjax/"
for sub in input output ui a11y adaptors; do
  [ -d "$es5/$sub" ] && cp -r "$es5/$sub" "$dest/mathjax/"
done
rm -rf "$dest/mathjax/a11y/sre" "$dest/mathjax/output/svg"
cp "$tmp/hm/package/dist/embed-amd.js" "$dest/widgets/"
cp "$tmp/rq/package/require.js" "$dest/widgets/"
touch "$dest/.complete"
echo "vendor_assets: $(du -sh "$dest" | cut -f1) in $dest"
