// Forms that need a second thought (remove a member, leave a group) carry data-confirm.
// htmx elements ask with hx-confirm instead.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});
