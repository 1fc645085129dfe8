// shipyard dashboard: small niceties only; every page works without this file.
"use strict";
document.addEventListener("change", (event) => {
  // A filter <select data-autosubmit> applies as soon as it changes.
  const field = event.target;
  if (field instanceof HTMLSelectElement && field.hasAttribute("data-autosubmit") && field.form) {
    field.form.requestSubmit();
  }
});
document.addEventListener("submit", (event) => {
  // A form posted once is not posted twice by a second click while the page loads.
  const form = event.target;
  if (form instanceof HTMLFormElement && form.method.toLowerCase() === "post") {
    for (const button of form.querySelectorAll("button[type=submit]")) {
      button.disabled = true;
    }
  }
});
