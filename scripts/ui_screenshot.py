"""Screenshot of the chat page answering one held-out task record with a trained model (the README's image).

    python scripts/ui_screenshot.py --model runs/demo/export --data runs/demo/data --task summarization \
        --out docs/images/ui-chat.png

Starts `kositp serve` on MODEL and `kositp ui` on top of it, opens the page in headless Chromium,
sends the user turn of the first TASK record of DATA's test split with the training's settings
(greedy, no system prompt: the demo trains without one), waits for the streamed reply to end and
saves the window. Prints the prompt, the reply and the record's reference answer, so the caption
can say how close it came.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kositp.serve.process import ServeProcess
from kositp.ui.process import UIProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def first_record(data: Path, task: str) -> dict:
    with open(data / "test.jsonl", encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            if record["task"] == task:
                return record
    sys.exit(f"error: no {task} record in {data / 'test.jsonl'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an exported model folder or a training run")
    parser.add_argument("--data", type=Path, required=True, help="a `kositp data build` folder (its test split)")
    parser.add_argument("--task", default="summarization", help="which of the 22 tasks to ask")
    parser.add_argument("--out", type=Path, default=Path("docs/images/ui-chat.png"))
    parser.add_argument("--name", default="kositp-demo", help="the model name the page shows")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    record = first_record(args.data, args.task)
    question = next(m["content"] for m in record["messages"] if m["role"] == "user")
    reference = next(m["content"] for m in record["messages"] if m["role"] == "assistant")
    with (ServeProcess(["--model", args.model, "--served-model-name", args.name]) as server,
          UIProcess(server.url + "/v1", ["temperature=0", "system_prompt=", "max_tokens=200"]) as ui,
          sync_playwright() as pw):
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(locale="ko-KR", viewport={"width": 1200, "height": 860}).new_page()
        page.goto(ui.url)
        page.wait_for_selector("#chat-input", timeout=60_000)
        page.wait_for_timeout(3000)  # the chat session's start-up (settings panel) before typing
        page.fill("#chat-input", question)
        page.click("#chat-submit")
        page.wait_for_selector('[data-step-type="assistant_message"]', timeout=300_000)
        page.wait_for_selector("#stop-button", state="detached", timeout=300_000)
        reply = page.locator('[data-step-type="assistant_message"]').last.inner_text().strip()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
        browser.close()
    print(json.dumps({"task": args.task, "id": record.get("id"), "prompt": question, "reply": reply,
                      "reference": reference, "screenshot": str(args.out)}, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
