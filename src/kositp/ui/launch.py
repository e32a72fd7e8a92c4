"""Start the Chainlit chat page: build a runtime folder from the package's files, then run Chainlit.

Chainlit reads its settings from, and writes generated files into, the folder it runs in
(`CHAINLIT_APP_ROOT`): `.chainlit/config.toml`, `.chainlit/translations/*.json` (it copies every
language it lacks), `chainlit.md`, `public/`, and an upload folder `.files/`. Our copies of the
files that carry settings live in this package (`src/kositp/ui/`). Each start makes a fresh
temporary runtime folder and copies them in (copies, not links: Chainlit refuses translation files
whose real path lies outside its folder), so:
- Chainlit never regenerates or overwrites our files, and never writes into the source tree;
- the package may be installed read-only;
- two pages (tests in parallel) never share a writable folder.
The runtime folder also gets `build/index.html`: Chainlit's page without its Google-font and
KaTeX CDN links (the JS and CSS assets are linked from Chainlit's own build), so an offline
browser loads the page with no request leaving the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from kositp.errors import KositpError
from kositp.ui.config import UIConfig, read_api_key

PACKAGE_DIR = Path(__file__).resolve().parent
APP_FILE = PACKAGE_DIR / "app.py"
# Files Chainlit reads from its app root, relative to it; each is copied from the package.
OUR_FILES = (".chainlit/config.toml", ".chainlit/translations/ko.json", "chainlit.md", "public")

# <link> tags in Chainlit's index.html that point off the machine (fonts, KaTeX CSS, preconnects).
_EXTERNAL_LINK = re.compile(r"<link\b[^>]*href=\"https?://[^\"]*\"[^>]*/?>\s*", re.IGNORECASE | re.DOTALL)


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        dst.symlink_to(src, target_is_directory=src.is_dir())
    except OSError:  # filesystems without symlinks
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)


def chainlit_build_dir() -> Path:
    """Chainlit's packaged frontend build (index.html + assets/)."""
    import importlib.util

    spec = importlib.util.find_spec("chainlit")
    if spec is None or spec.origin is None:
        raise KositpError("the chat page needs Chainlit: pip install 'kositp[ui]'")
    return Path(spec.origin).parent / "frontend" / "dist"


def offline_index_html(html: str) -> str:
    """Chainlit's index.html without any <link> to another host (Google fonts, jsDelivr KaTeX), marked as
    Korean (`lang="ko"` makes browsers pick Korean glyphs and hyphenation for the page's text)."""
    return _EXTERNAL_LINK.sub("", html).replace('<html lang="en">', '<html lang="ko">', 1)


def prepare_app_root(root: Path) -> Path:
    """Fill `root` with copies of our Chainlit files and an offline copy of the frontend's index.html."""
    for rel in OUR_FILES:
        _copy(PACKAGE_DIR / rel, root / rel)
    build = chainlit_build_dir()
    target = root / "build"
    target.mkdir(parents=True, exist_ok=True)
    for item in build.iterdir():
        if item.name != "index.html":
            _link_or_copy(item, target / item.name)
    html = (build / "index.html").read_text(encoding="utf-8")
    (target / "index.html").write_text(offline_index_html(html), encoding="utf-8")
    return root


ROOT_PREFIX = "kositp-ui-root-"
PID_FILE = "kositp-ui.pid"


def _remove_stale_roots() -> None:
    """Remove runtime folders of pages that died without cleaning up (a SIGTERM during an open
    websocket session can end the process before `finally` runs): those whose process is gone."""
    for folder in Path(tempfile.gettempdir()).glob(ROOT_PREFIX + "*"):
        try:
            pid = int((folder / PID_FILE).read_text(encoding="utf-8"))
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge (unreadable, another user's, or being created right now)


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(0)


def run_ui(cfg: UIConfig) -> None:
    """Serve the chat page until interrupted. Blocks; cleans its runtime folder up on exit."""
    read_api_key(cfg.api_key_file)  # a bad key file is a one-line error now, not a broken page later
    if "chainlit.config" in sys.modules:
        raise KositpError("Chainlit was imported before `kositp ui` could set its app folder; run it in a fresh process")
    _remove_stale_roots()
    root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX))
    (root / PID_FILE).write_text(str(os.getpid()), encoding="utf-8")
    # uvicorn shuts down gracefully on SIGTERM and then re-raises it; the default action would kill
    # the process before `finally` removes the runtime folder, so turn it into a normal exit.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        prepare_app_root(root)
        os.environ["CHAINLIT_APP_ROOT"] = str(root)
        os.environ["KOSITP_UI_CONFIG"] = cfg.model_dump_json()
        os.environ["CHAINLIT_HOST"] = cfg.host
        os.environ["CHAINLIT_PORT"] = str(cfg.port)
        from chainlit.cli import run_chainlit
        from chainlit.config import config as chainlit_config

        chainlit_config.run.headless = True  # never try to open a browser on the server
        print(f"kositp chat page: http://{cfg.host}:{cfg.port}  (API: {cfg.api})", flush=True)
        run_chainlit(str(APP_FILE))
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(root, ignore_errors=True)
