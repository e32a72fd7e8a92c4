"""`kositp ui`: the Chainlit chat page over an OpenAI-compatible API."""

from __future__ import annotations

from pathlib import Path

import typer


def ui_command(
    api: str = typer.Option(None, "--api", help="Base URL of the OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1."),
    api_key_file: Path | None = typer.Option(
        None, "--api-key-file", help="File with the API key (first non-empty line; # comments)."
    ),
    host: str = typer.Option(None, "--host", help="Interface the page listens on (default 127.0.0.1)."),
    port: int = typer.Option(None, "--port", help="Port of the page (default 8001)."),
    config: Path | None = typer.Option(None, "--config", help="A UIConfig recipe: name (ui/default) or YAML path."),
    overrides: list[str] = typer.Argument(None, help="More settings as key=value, e.g. temperature=0.2."),
) -> None:
    """Serve a Korean chat page (Chainlit) that talks only to the OpenAI-compatible API.

    한국어 채팅 페이지: 스트리밍 응답, 대화 기록, 설정 패널(모델, temperature, top_p, max_tokens,
    시스템 프롬프트), 22개 과제 예시, 중지 버튼, 새 대화.
    """
    from kositp.config import load_config
    from kositp.ui.config import UIConfig
    from kositp.ui.launch import run_ui

    cfg = load_config(UIConfig, config, list(overrides or []),
                      flags={"api": api, "api_key_file": api_key_file, "host": host, "port": port})
    run_ui(cfg)
