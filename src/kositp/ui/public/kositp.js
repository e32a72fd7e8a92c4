// kositp chat page: a message sent before the page is ready is kept and sent once it is.
//
// Chainlit shows the input box before its socket has connected and while a new chat's
// on_chat_start runs; until then its send button is disabled and Enter does nothing, leaving the
// text in the box with no sign of why. Here, Enter (or a click on the disabled send button) in
// that state queues the message: a note says the page is connecting, and the send button is
// pressed for the user as soon as it has stayed enabled for a moment (a freshly connected chat
// briefly enables it before on_chat_start marks it busy again).
(() => {
  "use strict";
  const NOTE_ID = "kositp-connecting-note";
  const NOTE_TEXT = "서버에 연결하는 중입니다. 연결되면 입력한 메시지를 바로 보냅니다.";
  const SETTLE_MS = 400;
  let pending = false;
  let settleTimer = null;

  const submitButton = () => document.getElementById("chat-submit");
  const inputText = () => {
    const input = document.getElementById("chat-input");
    if (!input) return "";
    return ("value" in input ? input.value : input.innerText || "").trim();
  };
  const notReady = () => {
    const button = submitButton();
    // No send button while a reply streams (the stop button takes its place): that wait is visible.
    return !!button && button.disabled && !document.getElementById("stop-button");
  };

  function showNote(visible) {
    let note = document.getElementById(NOTE_ID);
    if (!visible) {
      if (note) note.remove();
      return;
    }
    const composer = document.getElementById("message-composer");
    if (note || !composer) return;
    note = document.createElement("div");
    note.id = NOTE_ID;
    note.setAttribute("role", "status");
    note.textContent = NOTE_TEXT;
    note.style.cssText = "font-size:0.85rem;color:#2563eb;margin:0 0 0.4rem 0.5rem;display:flex;" +
      "align-items:center;gap:0.4rem;";
    const dot = document.createElement("span");
    dot.style.cssText = "width:0.5rem;height:0.5rem;border-radius:50%;background:#2563eb;" +
      "animation:kositp-pulse 1s ease-in-out infinite alternate;";
    note.prepend(dot);
    composer.parentElement.insertBefore(note, composer);
  }

  function queue() {
    pending = true;
    window.kositpQueuedSends = (window.kositpQueuedSends || 0) + 1;
    showNote(true);
  }

  function cancel() {
    pending = false;
    clearTimeout(settleTimer);
    settleTimer = null;
    showNote(false);
  }

  function trySend() {
    if (!pending) return;
    if (!inputText()) return cancel();  // the user emptied the box: nothing left to send
    const button = submitButton();
    if (!button || button.disabled) {
      clearTimeout(settleTimer);
      settleTimer = null;
      return;
    }
    if (settleTimer) return;
    settleTimer = setTimeout(() => {
      settleTimer = null;
      const again = submitButton();
      if (pending && again && !again.disabled && inputText()) {
        cancel();
        again.click();
      }
    }, SETTLE_MS);
  }

  document.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    if (!event.target.closest || !event.target.closest("#chat-input")) return;
    if (inputText() && notReady()) queue();
  }, true);

  // A click on a disabled button reaches its wrapper, not the button.
  document.addEventListener("click", (event) => {
    const button = submitButton();
    if (button && event.target instanceof Node && button.parentElement &&
        button.parentElement.contains(event.target) && inputText() && notReady()) queue();
  }, true);

  const style = document.createElement("style");
  style.textContent = "@keyframes kositp-pulse { from { opacity: 0.25 } to { opacity: 1 } }";
  document.head.appendChild(style);

  new MutationObserver(trySend).observe(document.documentElement, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["disabled"],
  });
  document.addEventListener("input", trySend, true);
})();
