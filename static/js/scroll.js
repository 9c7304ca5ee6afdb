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

/** On opening a room: the newest message, unless the "New messages" line would then be out
 * of sight above; then that line, at the top. */
export function scrollToUnread() {
  scrollToBottom();
  const pane = historyPane();
  const line = document.getElementById("unread-line");
  if (!pane || !line) return;
  const above = line.getBoundingClientRect().top - pane.getBoundingClientRect().top;
  if (above < 0) pane.scrollTop += above - 8;
}
