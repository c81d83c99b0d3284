"""Check a built book: every page present, maths and widget scripts local, no CDN left.

Usage: python tools/check_html.py _build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

CDN_HOSTS = ("cdn.jsdelivr.net", "cdnjs.cloudflare.com", "unpkg.com")


def check(html_dir: Path) -> list[str]:
    problems = []
    if not (html_dir / "index.html").exists():
        return [f"{html_dir}/index.html is missing"]
    if not (html_dir / "mathjax" / "tex-mml-chtml.js").exists():
        problems.append("mathjax/tex-mml-chtml.js was not shipped with the HTML")
    for page in sorted(html_dir.rglob("*.html")):
        text = page.read_text(errors="replace")
        if "<p>| " in text or "<p>|—|" in text:
            problems.append(f"{page.relative_to(html_dir)} shows a Markdown table as raw text")
        for host in CDN_HOSTS:
            if f"<script src=\"https://{host}" in text or f"src=\"https://{host}" in text:
                problems.append(f"{page.relative_to(html_dir)} loads a script from {host}")
    return problems


def main() -> int:
    html_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "_build/html")
    problems = check(html_dir)
    for problem in problems:
        print(f"check_html: {problem}")
    pages = len(list(html_dir.rglob("*.html")))
    print(f"check_html: {pages} pages checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
