// Private answers inside a shared room (only the asker sees them): the question box empties
// once its answer card is in, and a new card scrolls into view.
document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.detail.elt;
  if (!(form instanceof HTMLFormElement) || !event.detail.successful) return;
  if (form.hasAttribute("data-reset-on-success")) form.reset();
  if (form.id === "catch-up") form.remove(); // asked once; the answer shows below
  const answers = document.getElementById("private-answers");
  if (answers && answers.lastElementChild) answers.lastElementChild.scrollIntoView({ block: "nearest" });
});
