// Small DOM helpers shared by the other modules.

/** The signed-in person's id as a string ("" when signed out). */
export const me = document.body.dataset.userId || "";

/** Elements matching `selector` at `root` and below: htmx hands a swapped element over as `root` itself. */
export function within(root, selector) {
  const found = Array.from(root.querySelectorAll(selector));
  if (root.matches && root.matches(selector)) found.unshift(root);
  return found;
}

/** Whether the page is on screen (not a background tab or a minimised window). */
export function pageVisible() {
  return document.visibilityState === "visible";
}
