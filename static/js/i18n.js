// The interface's words in the page's language: Django's JavaScript catalog (/jsi18n/,
// loaded by base.html before the modules) defines gettext, ngettext and interpolate. Without
// it (a test page, a failed load) the English text is used as it is.
const catalog = window.django || {};

export const gettext = catalog.gettext ? (text) => catalog.gettext(text) : (text) => text;
export const ngettext = catalog.ngettext
  ? (singular, plural, count) => catalog.ngettext(singular, plural, count)
  : (singular, plural, count) => (count === 1 ? singular : plural);
/** "%(name)s is typing…" with {name: "Alice"}. */
export function interpolate(format, values) {
  return format.replace(/%\((\w+)\)s/g, (_, key) => String(values[key]));
}
/** The page's language (html lang), for dates and numbers. */
export const language = document.documentElement.lang || "en";
