// The history pane follows new messages while the reader is at its bottom, and leaves
// them alone while they read further up.

function historyPane() {
  return document.getElementById("history");
}

/** Whether the reader is at (or within a line or two of) the newest message. */
export function nearBottom() {
  const pane = historyPane();
  return !pane || pane.scrollHeight - pane.scrollTop - pane.clientHeight < 120;
}

/** Show the newest message. */
export function scrollToBottom() {
  const pane = historyPane();
  if (pane) pane.scrollTop = pane.scrollHeight;
}
