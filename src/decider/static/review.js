// Keyboard shortcuts for reviewers: 1..9 decide, S skips, N takes the next case, U undoes the decision just
// made (while its button shows), Esc leaves a field.
// Ignored while typing in a field, so a note can contain digits and the letter s.
document.addEventListener("keydown", (event) => {
  const target = event.target;
  const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement ||
    target instanceof HTMLSelectElement;
  if (event.key === "Escape" && typing) { target.blur(); return; }
  if (typing || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const key = event.key.toLowerCase();
  const decide = document.querySelector(`#decide-form button[data-key="${CSS.escape(key)}"]`);
  const button = decide || (key === "s" && document.getElementById("skip")) ||
    (key === "n" && document.getElementById("next-case")) || (key === "u" && document.getElementById("undo"));
  if (button && !button.disabled) { event.preventDefault(); button.click(); }
});

// One submission per page: a second key press while the first decision is on its way would be refused
// (the case is no longer yours) and only confuse. The clicked button's value is kept in a hidden field,
// because a disabled button is not sent with its form.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const clicked = event.submitter;
  if (clicked && clicked.name) {
    const keep = document.createElement("input");
    keep.type = "hidden"; keep.name = clicked.name; keep.value = clicked.value;
    form.appendChild(keep);
  }
  document.querySelectorAll("#decide-form button, #skip-form button").forEach((b) => { b.disabled = true; });
});
